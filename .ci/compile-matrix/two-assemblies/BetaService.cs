// Two-assembly check, library B: references library A and holds its own copy of Topi.cs (internal
// mode). Both copies declare Topi.TopiClient and friends; B must see only its own.
using System;
using System.Threading;
using System.Threading.Tasks;
using Alpha;
using Topi;

namespace Beta
{
    /// <summary>Library B's public API, built on library A's public API and on B's own copy of Topi.</summary>
    public sealed class BetaService : IDisposable
    {
        private readonly TopiTokenProvider _tokens;
        private readonly AlphaService _alpha;

        /// <summary>Creates the service.</summary>
        /// <param name="tokenEndpoint">The token endpoint.</param>
        /// <param name="apiBaseAddress">The API base address.</param>
        public BetaService(Uri tokenEndpoint, Uri apiBaseAddress)
        {
            _alpha = new AlphaService(tokenEndpoint, apiBaseAddress);
            _tokens = new TopiTokenProvider(new TopiOptions
            {
                ClientId = "beta",
                ClientSecret = "beta-secret",
                Environment = new TopiEnvironment("beta", tokenEndpoint, apiBaseAddress),
            });
        }

        /// <summary>Library A's service, part of library B's public API.</summary>
        public AlphaService Alpha => _alpha;

        /// <summary>Describes both tokens: one from A's copy of Topi, one from B's.</summary>
        /// <param name="cancellationToken">Cancels the wait.</param>
        /// <returns>The two token types.</returns>
        public async Task<string> DescribeAsync(CancellationToken cancellationToken = default)
        {
            string alphaType = await _alpha.GetTokenTypeAsync(cancellationToken).ConfigureAwait(false);
            TopiToken token = await _tokens.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            return alphaType + "/" + token.TokenType + "@" + _tokens.Environment.Name;
        }

        /// <inheritdoc />
        public void Dispose()
        {
            _tokens.Dispose();
            _alpha.Dispose();
        }
    }
}
