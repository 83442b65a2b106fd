// Two-assembly check, consumer C: references A and B and uses both public surfaces. It must not see
// either copy of Topi (no CS0433 ambiguity, no CS0436 conflict), so it can declare its own TopiClient.
using System;
using System.Threading;
using System.Threading.Tasks;
using Alpha;
using Beta;

namespace Consumer
{
    /// <summary>Not Topi.cs's: the consumer's own type of that name.</summary>
    internal sealed class TopiClient
    {
        public string Name { get; } = "consumer";
    }

    internal static class Program
    {
        private static async Task<int> Main()
        {
            var tokenEndpoint = new Uri("http://127.0.0.1:9/oauth2/token");
            var api = new Uri("http://127.0.0.1:9/");
            using var alpha = new AlphaService(tokenEndpoint, api);
            using var beta = new BetaService(tokenEndpoint, api);
            var own = new TopiClient();
            Console.WriteLine(alpha.EnvironmentName + " " + beta.Alpha.EnvironmentName + " " + own.Name);
            using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
            try
            {
                Console.WriteLine(await beta.DescribeAsync(cts.Token).ConfigureAwait(false));
            }
            catch (OperationCanceledException)
            {
                Console.WriteLine("cancelled");
            }

            return 0;
        }
    }
}
