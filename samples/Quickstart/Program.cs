// The Topi.cs quickstart: get a token, list every shipping method across pages, create one, show a
// typed API error, and show that all of it used one cached token.
//
//   dotnet run --project samples/Quickstart
//
// With TOPI_CLIENT_ID and TOPI_CLIENT_SECRET set (and TOPI_ENVIRONMENT=sandbox|production, default
// sandbox) it talks to topi; otherwise it starts the embedded fake topi server and says so.
// Against production it only reads: the create steps run in the sandbox and against the fake.

using System.Diagnostics.Metrics;
using System.Text.Json.Serialization;
using Topi;
using Topi.Testing;

return await Quickstart.RunAsync();

static class Quickstart
{
    public static async Task<int> RunAsync()
    {
        string? id = Environment.GetEnvironmentVariable("TOPI_CLIENT_ID");
        string? secret = Environment.GetEnvironmentVariable("TOPI_CLIENT_SECRET");
        string? environmentName = Environment.GetEnvironmentVariable("TOPI_ENVIRONMENT");
        if (string.IsNullOrWhiteSpace(environmentName)) environmentName = "sandbox";
        FakeTopiServer? fake = null;
        TopiOptions options;
        if (string.IsNullOrWhiteSpace(id) != string.IsNullOrWhiteSpace(secret))
        {
            Console.Error.WriteLine("Set both TOPI_CLIENT_ID and TOPI_CLIENT_SECRET to talk to topi, or neither to use the embedded fake server.");
            return 2;
        }
        if (string.IsNullOrWhiteSpace(id) || string.IsNullOrWhiteSpace(secret))
        {
            fake = FakeTopiServer.Start(new FakeTopiServerOptions { ClientId = "quickstart", ClientSecret = "quickstart-secret", ShippingMethodCount = 5, PageSize = 2 });
            Console.WriteLine($"TOPI_CLIENT_ID / TOPI_CLIENT_SECRET are not set: using the embedded fake topi server at {fake.BaseAddress}");
            options = new TopiOptions
            {
                ClientId = fake.ClientId,
                ClientSecret = fake.ClientSecret,
                Environment = new TopiEnvironment("fake", fake.TokenEndpoint, fake.BaseAddress),
            };
        }
        else
        {
            TopiEnvironment? environment = environmentName.ToLowerInvariant() switch
            {
                "sandbox" => TopiEnvironment.Sandbox,
                "production" => TopiEnvironment.Production,
                _ => null,
            };
            if (environment is null)
            {
                Console.Error.WriteLine("TOPI_ENVIRONMENT must be 'sandbox' or 'production'.");
                return 2;
            }
            options = new TopiOptions { ClientId = id, ClientSecret = secret, Environment = environment };
            Console.WriteLine($"Using topi {environment.Name}: {environment.ApiBaseAddress}");
        }

        // Count token requests through the library's own telemetry (a Meter named "Topi").
        long tokenRequests = 0;
        using var meters = new MeterListener();
        meters.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Topi" && instrument.Name == "topi.token.requests") listener.EnableMeasurementEvents(instrument);
        };
        meters.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref tokenRequests, value));
        meters.Start();

        try
        {
            using var client = new TopiClient(options);

            TopiToken token = await client.TokenProvider.GetTokenAsync();
            Console.WriteLine($"1. Token: {token}");
            Console.WriteLine($"   lifetime {token.ExpiresAt - DateTimeOffset.UtcNow:hh\\:mm\\:ss}, {token.Scopes.Count} scopes granted");

            Console.WriteLine("2. Shipping methods, all pages:");
            int count = 0;
            await foreach (ShippingMethod method in client.GetAllPagesAsync("v1/shipping-method", QuickstartJson.Default.ShippingMethod, firstPage: 0))
            {
                count++;
                Console.WriteLine($"   {method.SellerShippingMethodReference,-28} {method.Name} (id {method.Id})");
            }
            Console.WriteLine($"   {count} shipping methods");

            if (client.Environment == TopiEnvironment.Production)
            {
                Console.WriteLine("3./4. Skipped in production: the quickstart writes only to the sandbox and the fake server.");
            }
            else
            {
                var create = new CreateShippingMethod($"quickstart-{Guid.NewGuid():N}"[..20], "Quickstart Parcel", false);
                ShippingMethod created = await client.PostJsonAsync("v1/shipping-method/method", create,
                    QuickstartJson.Default.CreateShippingMethod, QuickstartJson.Default.ShippingMethod);
                Console.WriteLine($"3. Created shipping method {created.SellerShippingMethodReference} (id {created.Id})");

                try
                {
                    await client.PostJsonAsync("v1/shipping-method/method", create with { SellerShippingMethodReference = "Bridges" },
                        QuickstartJson.Default.CreateShippingMethod, QuickstartJson.Default.ShippingMethod);
                    Console.Error.WriteLine("4. Expected a 422 for the reference 'Bridges', but the call succeeded.");
                    return 1;
                }
                catch (TopiApiException ex)
                {
                    Console.WriteLine($"4. 'Bridges' refused as expected: TopiApiException {(int?)ex.StatusCode} {ex.ErrorName}: {ex.ErrorMessage}");
                }
            }

            long requests = Interlocked.Read(ref tokenRequests);
            Console.WriteLine($"5. Token requests: {requests} (every call above reused the cached token)"
                + (fake is null ? "" : $"; the fake server saw {fake.TokenRequests} token request(s) and {fake.ApiRequests} API requests"));
            return requests == 1 ? 0 : 1;
        }
        catch (TopiException ex)
        {
            Console.Error.WriteLine($"Failed: {ex.GetType().Name}: {ex.Message}");
            return 1;
        }
        finally
        {
            if (fake is not null) await fake.DisposeAsync();
        }
    }
}

record ShippingMethod(string Id, string SellerShippingMethodReference, string? Name, bool IsInStorePickup, bool Supported);

record CreateShippingMethod(string SellerShippingMethodReference, string Name, bool IsInStorePickup);

// Source-generated JSON (trim and Native-AOT safe), in topi's snake_case.
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(ShippingMethod))]
[JsonSerializable(typeof(CreateShippingMethod))]
partial class QuickstartJson : JsonSerializerContext;
