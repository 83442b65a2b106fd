// Native AOT smoke test, used by compile-matrix.sh only while samples/Quickstart/Program.cs does not
// exist: a token and GET round trip, plus a paged walk, against the in-process fake topi server,
// published with PublishAot=true. Exit code 0 means every step worked in the native binary.
using System.Text.Json.Serialization;
using Topi;
using Topi.Testing;

namespace AotSmoke;

internal sealed class ShippingMethod
{
    [JsonPropertyName("id")]
    public string Id { get; set; } = "";

    [JsonPropertyName("seller_shipping_method_reference")]
    public string Reference { get; set; } = "";
}

internal sealed class ShippingMethodPage
{
    [JsonPropertyName("data")]
    public List<ShippingMethod> Data { get; set; } = [];
}

[JsonSerializable(typeof(ShippingMethodPage))]
[JsonSerializable(typeof(ShippingMethod))]
internal sealed partial class SmokeJsonContext : JsonSerializerContext;

internal static class Program
{
    private static async Task<int> Main()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        await using FakeTopiServer server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(new TopiOptions
        {
            ClientId = server.ClientId,
            ClientSecret = server.ClientSecret,
            Environment = new TopiEnvironment("sandbox", server.TokenEndpoint, server.BaseAddress),
        });

        TopiToken token = await client.TokenProvider.GetTokenAsync(cts.Token);
        TopiToken again = await client.TokenProvider.GetTokenAsync(cts.Token);
        ShippingMethodPage first = await client.GetAsync("v1/shipping-method?page=0", SmokeJsonContext.Default.ShippingMethodPage, cts.Token);
        int walked = 0;
        await foreach (ShippingMethod method in client.GetAllPagesAsync("v1/shipping-method", SmokeJsonContext.Default.ShippingMethod, 0, cts.Token))
        {
            if (method.Id.Length > 0) walked++;
        }

        Console.WriteLine($"token: {token.TokenType}, expires {token.ExpiresAt:O}, cached: {ReferenceEquals(token, again)}");
        Console.WriteLine($"first page: {first.Data.Count} methods; all pages: {walked} methods; token requests: {server.TokenRequests}");
        bool ok = ReferenceEquals(token, again) && first.Data.Count == 2 && walked == 5 && server.TokenRequests == 1;
        Console.WriteLine(ok ? "aot-smoke: OK" : "aot-smoke: UNEXPECTED RESULT");
        return ok ? 0 : 1;
    }
}
