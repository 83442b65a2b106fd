// Two-assembly check, library A: holds its own copy of Topi.cs (internal mode) and exposes a public
// API of its own that uses Topi inside.
using System;
using System.Threading;
using System.Threading.Tasks;
using Topi;

namespace Alpha
{
    /// <summary>Library A's public API; Topi stays internal to library A.</summary>
    public sealed class AlphaService : IDisposable
    {
        private readonly TopiClient _client;

        /// <summary>Creates the service for a topi-compatible server.</summary>
        /// <param name="tokenEndpoint">The token endpoint.</param>
        /// <param name="apiBaseAddress">The API base address.</param>
        public AlphaService(Uri tokenEndpoint, Uri apiBaseAddress)
        {
            _client = new TopiClient(new TopiOptions
            {
                ClientId = "alpha",
                ClientSecret = "alpha-secret",
                Environment = new TopiEnvironment("alpha", tokenEndpoint, apiBaseAddress),
            });
        }

        /// <summary>The environment name library A's Topi copy reports.</summary>
        public string EnvironmentName => _client.Environment.Name;

        /// <summary>Gets a token through library A's copy of Topi and returns its type.</summary>
        /// <param name="cancellationToken">Cancels the wait.</param>
        /// <returns>The token type, such as <c>Bearer</c>.</returns>
        public async Task<string> GetTokenTypeAsync(CancellationToken cancellationToken = default)
        {
            TopiToken token = await _client.TokenProvider.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            return token.TokenType;
        }

        /// <inheritdoc />
        public void Dispose() => _client.Dispose();
    }
}
