// Compile-matrix host whose names collide with Topi.cs on purpose: its RootNamespace is `Topi`, and it
// declares its own `Topi` (a plugin entry class in namespace Topi), `Token` and `HttpClientExtensions`
// (both in namespace Topi, next to Topi.cs's types, and again in the global namespace) and a
// `TopiClient` of its own in `Topi.Host`. Topi.cs must compile unchanged next to all of them.
// Only compiled, never run; valid with Nullable and ImplicitUsings on or off and with C# 12.
using System;
using System.Collections.Generic;
using System.Net.Http;
using System.Text.Json.Serialization;
using System.Threading;
using System.Threading.Tasks;

/// <summary>The host's own token type, in the global namespace.</summary>
internal sealed class Token
{
    public string Value { get; set; } = "";
}

/// <summary>The host's own HTTP helpers, in the global namespace.</summary>
internal static class HttpClientExtensions
{
    internal static Task<string> GetTextAsync(this HttpClient client, string path, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.GetStringAsync(new Uri(path, UriKind.Relative), cancellationToken);
    }
}

namespace Topi
{
    /// <summary>The host's own token type, in the same namespace as Topi.cs.</summary>
    internal sealed class Token
    {
        public string Value { get; set; } = "";

        public DateTimeOffset ExpiresAt { get; set; }
    }

    /// <summary>The host's own HTTP helpers, in the same namespace as Topi.cs.</summary>
    internal static class HttpClientExtensions
    {
        internal static async Task<Token> GetHostTokenAsync(this HttpClient client, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(client);
            string text = await client.GetStringAsync(new Uri("token", UriKind.Relative), cancellationToken).ConfigureAwait(false);
            return new Token { Value = text, ExpiresAt = DateTimeOffset.UtcNow };
        }

        internal static Task<HttpResponseMessage> SendAsync(this HttpClient client, HttpRequestMessage request)
        {
            ArgumentNullException.ThrowIfNull(client);
            return client.SendAsync(request, HttpCompletionOption.ResponseContentRead, CancellationToken.None);
        }
    }

    // Everyday names a host with RootNamespace Topi may well use; Topi.cs's own code must not bind to them.
    internal enum Environment { Sandbox, Production }

    internal sealed class Protocol { }

    internal sealed class Telemetry { }

    internal sealed class Plumbing { }

    // Not here: a host type in namespace Topi named like a BCL type Topi.cs uses (Exception, Uri, Task ...)
    // shadows that type for Topi.cs too; C# resolves a namespace's own members before any using directive.

    internal sealed class Options { }

    internal sealed class Client { }

    internal sealed class Settings { }

    internal static class Constants
    {
        internal const Environment DefaultEnvironment = Environment.Sandbox;
    }

    /// <summary>A plugin's entry class named like the product, as plugin conventions often ask.</summary>
    internal static class Topi
    {
        internal const string Name = "Topi";

        internal static TopiClient CreateClient(Uri localServer) => new TopiClient(new TopiOptions
        {
            ClientId = "client-id",
            ClientSecret = "client-secret",
            Environment = new TopiEnvironment(Name, new Uri(localServer, "oauth2/token"), localServer),
        });
    }
}

namespace Topi.Host
{
    internal sealed class ShippingMethod
    {
        [JsonPropertyName("id")]
        public string Id { get; set; } = "";

        [JsonPropertyName("supported")]
        public bool Supported { get; set; }
    }

    internal sealed class ShippingMethodPage
    {
        [JsonPropertyName("data")]
        public List<ShippingMethod> Data { get; set; } = new List<ShippingMethod>();
    }

    [JsonSerializable(typeof(ShippingMethodPage))]
    [JsonSerializable(typeof(ShippingMethod))]
    internal sealed partial class HostJsonContext : JsonSerializerContext
    {
    }

    /// <summary>The host's own client type, named like Topi.cs's, wrapping it.</summary>
    internal sealed class TopiClient : IDisposable
    {
        private readonly global::Topi.TopiClient _inner;

        internal TopiClient(Uri localServer)
        {
            _inner = global::Topi.Topi.CreateClient(localServer);
        }

        internal async Task<Token> GetTokenAsync(CancellationToken cancellationToken)
        {
            TopiToken token = await _inner.TokenProvider.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            return new Token { Value = token.AccessToken, ExpiresAt = token.ExpiresAt };
        }

        internal async Task<int> CountSupportedAsync(CancellationToken cancellationToken)
        {
            ShippingMethodPage page = await _inner.GetAsync("v1/shipping-method?page=0", HostJsonContext.Default.ShippingMethodPage, cancellationToken).ConfigureAwait(false);
            int count = 0;
            foreach (ShippingMethod method in page.Data)
            {
                if (method.Supported) count++;
            }

            await foreach (ShippingMethod method in _inner.GetAllPagesAsync("v1/shipping-method", HostJsonContext.Default.ShippingMethod, 0, cancellationToken).ConfigureAwait(false))
            {
                if (method.Supported) count++;
            }

            string raw = await _inner.HttpClient.GetTextAsync("v1/shipping-method", cancellationToken).ConfigureAwait(false);
            global::Token hostToken = new global::Token { Value = raw };
            return count + hostToken.Value.Length;
        }

        public void Dispose() => _inner.Dispose();
    }

    internal static class CollisionUsage
    {
        internal static async Task<int> RunAsync(Uri localServer, CancellationToken cancellationToken)
        {
            using var client = new TopiClient(localServer);
            Token token = await client.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            int count = await client.CountSupportedAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                using var http = new HttpClient { BaseAddress = localServer };
                Token other = await http.GetHostTokenAsync(cancellationToken).ConfigureAwait(false);
                count += other.Value.Length;
            }
            catch (TopiException ex)
            {
                count += ex.Message.Length;
            }

            return count + token.Value.Length;
        }
    }

#if TOPI_PUBLIC
    /// <summary>Proves TOPI_PUBLIC made the types public: this would not compile (CS0050/CS0051) if they were internal.</summary>
    public static class PublicSurface
    {
        /// <summary>Creates a client.</summary>
        /// <param name="options">The client's options.</param>
        /// <returns>A new client.</returns>
        public static global::Topi.TopiClient Create(TopiOptions options) => new global::Topi.TopiClient(options);
    }
#endif
}
