// Compile-matrix host: an ordinary application that vendors Topi.cs and uses its API the way the
// README shows. It is only compiled (never run), under every host setting of the matrix, so it is
// written to be valid with Nullable and ImplicitUsings on or off and with C# 12.
using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Http;
using System.Text.Json.Serialization;
using System.Threading;
using System.Threading.Tasks;
using Topi;

namespace Contoso.Shop
{
    internal sealed class ShippingMethod
    {
        [JsonPropertyName("id")]
        public string Id { get; set; } = "";

        [JsonPropertyName("seller_shipping_method_reference")]
        public string Reference { get; set; } = "";

        [JsonPropertyName("supported")]
        public bool Supported { get; set; }
    }

    internal sealed class ShippingMethodPage
    {
        [JsonPropertyName("data")]
        public List<ShippingMethod> Data { get; set; } = new List<ShippingMethod>();
    }

    internal sealed class CreateShippingMethod
    {
        [JsonPropertyName("seller_shipping_method_reference")]
        public string Reference { get; set; } = "";
    }

    [JsonSerializable(typeof(ShippingMethodPage))]
    [JsonSerializable(typeof(ShippingMethod))]
    [JsonSerializable(typeof(CreateShippingMethod))]
    internal sealed partial class ShopJsonContext : JsonSerializerContext
    {
    }

    internal static class TopiUsage
    {
        internal static async Task<int> RunAsync(Uri localServer, CancellationToken cancellationToken)
        {
            var environment = new TopiEnvironment("local", new Uri(localServer, "oauth2/token"), localServer);
            var options = new TopiOptions
            {
                ClientId = "client-id",
                ClientSecret = "client-secret",
                Environment = environment,
                Scope = "seller-shipping-method:read seller-shipping-method:edit",
                ExpirySkew = TimeSpan.FromSeconds(30),
                RequestTimeout = TimeSpan.FromSeconds(10),
                MaxApiRetries = 1,
            };

            using var client = new TopiClient(options);
            TopiToken token = await client.TokenProvider.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            int count = token.HasScope("seller-shipping-method:read") ? 1 : 0;

            ShippingMethodPage page = await client.GetAsync("v1/shipping-method?page=0", ShopJsonContext.Default.ShippingMethodPage, cancellationToken).ConfigureAwait(false);
            count += page.Data.Count;

            await foreach (ShippingMethod method in client.GetAllPagesAsync("v1/shipping-method", ShopJsonContext.Default.ShippingMethod, 0, cancellationToken).ConfigureAwait(false))
            {
                if (method.Supported) count++;
            }

            try
            {
                ShippingMethod created = await client.PostJsonAsync("v1/shipping-method/method", new CreateShippingMethod { Reference = "standard" },
                    ShopJsonContext.Default.CreateShippingMethod, ShopJsonContext.Default.ShippingMethod, cancellationToken).ConfigureAwait(false);
                count += created.Id.Length;
            }
            catch (TopiApiException ex) when (ex.StatusCode == HttpStatusCode.UnprocessableEntity)
            {
                Console.WriteLine((ex.ErrorName ?? "error") + ": " + (ex.ErrorMessage ?? ex.Message));
            }
            catch (TopiAuthenticationException ex)
            {
                Console.WriteLine((ex.Error ?? "auth") + " " + ex.IsTransient);
                client.TokenProvider.Invalidate(token);
            }
            catch (TopiException ex) when (ex.IsTransient)
            {
                Console.WriteLine(ex.Message);
            }

            using (var provider = new TopiTokenProvider(options))
            using (var handler = new TopiAuthenticationHandler(provider, new SocketsHttpHandler()))
            using (var http = new HttpClient(handler) { BaseAddress = TopiEnvironment.Sandbox.ApiBaseAddress })
            using (var request = new HttpRequestMessage(HttpMethod.Get, "v1/shipping-method"))
            {
                request.Options.Set(TopiAuthenticationHandler.DisableRetries, true);
                using HttpResponseMessage response = await http.SendAsync(request, cancellationToken).ConfigureAwait(false);
                count += (int)response.StatusCode;
            }

            return count + TopiEnvironment.Production.Name.Length;
        }
    }

#if TOPI_PUBLIC
    /// <summary>Proves TOPI_PUBLIC made the types public: this would not compile (CS0050/CS0051) if they were internal.</summary>
    public static class PublicSurface
    {
        /// <summary>Creates a client for <paramref name="options"/>.</summary>
        /// <param name="options">The client's options.</param>
        /// <returns>A new client.</returns>
        public static TopiClient Create(TopiOptions options) => new TopiClient(options);

        /// <summary>Gets a token.</summary>
        /// <param name="client">The client.</param>
        /// <returns>The token.</returns>
        public static ValueTask<TopiToken> TokenAsync(TopiClient client)
        {
            ArgumentNullException.ThrowIfNull(client);
            return client.TokenProvider.GetTokenAsync();
        }
    }
#endif
}
