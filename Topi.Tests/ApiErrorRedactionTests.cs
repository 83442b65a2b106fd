using System.Text;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D15: an error body from the Seller API that echoes the client secret (in any form the token request used) or the
/// access token in hand never puts it into the exception's message, ToString or properties. Before the fix only the
/// 40-character run rule applied there, so a short opaque token or the secret showed in clear.
/// </summary>
public sealed class ApiErrorRedactionTests
{
    // Short and opaque: no length heuristic can spot it, only knowing it can.
    private const string ShortOpaqueToken = "Zq8uX2mLr4Tn0pWs";

    public static TheoryData<string> Bodies => new()
    {
        "html-500", "text-400", "json-string-403", "goa-message-422", "goa-name-and-id-400",
        // A JSON body that is not a goa error is quoted as an excerpt; encoders escape the secret in it differently.
        "json-object-400-dotnet-escaped", "json-object-400-go-escaped",
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public async Task ApiError_BodyEchoesSecretAndToken_NeitherInMessageToStringOrProperties(string body)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientId: FancyClientId, clientSecret: FancySecret);
        server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + ShortOpaqueToken + "\",\"token_type\":\"Bearer\",\"expires_in\":3600}"));
        string basic = Convert.ToBase64String(Encoding.UTF8.GetBytes(FancyClientIdFormEncoded + ":" + FancySecretFormEncoded));
        string secretBase64 = Convert.ToBase64String(Encoding.UTF8.GetBytes(FancySecret));
        string echo = "secret " + FancySecret + " form " + FancySecretFormEncoded + " basic " + basic + " b64 " + secretBase64 + " token " + ShortOpaqueToken;
        string json = System.Text.Json.JsonSerializer.Serialize(echo);
        server.EnqueueApiFault(body switch
        {
            "html-500" => FakeFault.Status(500, "<html><pre>" + echo + "</pre></html>", "text/html"),
            "text-400" => FakeFault.Status(400, echo, "text/plain"),
            "json-string-403" => FakeFault.Json(json, 403),
            "goa-message-422" => FakeFault.Status(422, "{\"name\":\"unprocessable\",\"id\":\"abc\",\"message\":" + json + "}", "application/vnd.goa.error"),
            "goa-name-and-id-400" => FakeFault.Status(400, "{\"name\":" + json + ",\"id\":" + json + ",\"message\":\"bad\"}", "application/vnd.goa.error"),
            // .NET's default encoder: \u002B for '+', \u0026 for '&', \u00FC for 'ü'.
            "json-object-400-dotnet-escaped" => FakeFault.Json("{\"detail\":" + json + "}", 400),
            // Go's encoder (topi's goa is written in Go): \u0026, \u003c, \u003e; everything else as it is.
            "json-object-400-go-escaped" => FakeFault.Json("{\"detail\":\"" + echo.Replace("&", "\\u0026", StringComparison.Ordinal) + "\"}", 400),
            _ => throw new ArgumentOutOfRangeException(nameof(body)),
        });
        TopiOptions options = TestSupport.OptionsFor(server, time);
        options.ClientId = FancyClientId;
        options.ClientSecret = FancySecret;
        options.MaxApiRetries = 0;
        using var client = new TopiClient(options);

        TopiApiException ex = await Assert.ThrowsAsync<TopiApiException>(() => client.DeleteAsync("v1/shipping-method/x"));

        string dotnetEscaped = System.Text.Json.JsonSerializer.Serialize(FancySecret)[1..^1], goEscaped = FancySecret.Replace("&", "\\u0026", StringComparison.Ordinal);
        string[] forbidden = [FancySecret, FancySecretFormEncoded, Uri.EscapeDataString(FancySecret), secretBase64, basic, ShortOpaqueToken, dotnetEscaped, goEscaped];
        var texts = new List<string>(Texts(ex)) { ex.ErrorMessage ?? "", ex.ErrorName ?? "", ex.ErrorId ?? "" };
        foreach (string text in texts)
            foreach (string secret in forbidden)
                Assert.False(text.Contains(secret, StringComparison.Ordinal), $"[{body}] a secret or the token #{Array.IndexOf(forbidden, secret)} is shown");
        // The rest of the body is still there to read.
        Assert.Contains("[redacted]", ex.Message);
        Assert.Equal(1, server.TokenRequests);
    }

    // A secret with a quote and a backslash, echoed JSON-escaped in a JSON error body that is not a goa error.
    [Fact]
    public async Task ApiError_JsonBodyEchoesSecretWithQuoteAndBackslash_NotInMessage()
    {
        const string secret = "s3cr\"et\\val&<x>";
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, clientSecret: secret);
        string json = System.Text.Json.JsonSerializer.Serialize("echo " + secret);
        string minimal = "\"echo " + secret.Replace("\\", "\\\\").Replace("\"", "\\\"") + "\"";
        server.EnqueueApiFault(FakeFault.Json("{\"a\":" + json + ",\"b\":" + minimal + "}", 400));
        TopiOptions options = TestSupport.OptionsFor(server, time);
        options.ClientSecret = secret;
        options.MaxApiRetries = 0;
        using var client = new TopiClient(options);

        TopiApiException ex = await Assert.ThrowsAsync<TopiApiException>(() => client.DeleteAsync("v1/shipping-method/x"));

        foreach (string text in Texts(ex))
        {
            Assert.False(text.Contains(secret, StringComparison.Ordinal), "the secret is shown");
            Assert.False(text.Contains("s3cr\\\"et", StringComparison.Ordinal), "the JSON-escaped secret is shown");
        }
        Assert.Contains("[redacted]", ex.Message);
    }
}
