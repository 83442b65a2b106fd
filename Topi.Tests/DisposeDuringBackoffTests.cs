using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D16: a provider disposed while its renewal waits between two token attempts (the retry backoff). Its callers get
/// ObjectDisposedException, as when it is disposed during the request itself; before the fix the backoff's
/// cancellation escaped as a TaskCanceledException that no caller had asked for.
/// </summary>
public sealed class DisposeDuringBackoffTests
{
    [Fact]
    public async Task Dispose_DuringTokenRetryBackoff_CallerGetsObjectDisposedException()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Status(503, "down", "text/plain"));
        TopiTokenProvider provider = Provider(server, time, o => { o.RetryBaseDelay = TimeSpan.FromSeconds(2); o.MaxRetryDelay = TimeSpan.FromSeconds(2); });
        try
        {
            Task<TopiToken> call = provider.GetTokenAsync().AsTask();
            // The first attempt failed and the renewal now waits on a backoff timer of at most 2 s.
            await TestSupport.EventuallyAsync(() => server.TokenRequests == 1 && time.CreatedDueTimes.Any(d => d > TimeSpan.Zero && d <= TimeSpan.FromSeconds(2)),
                "the renewal waits between attempts");

            provider.Dispose();
            Exception? ex = await Record.ExceptionAsync(() => call.WaitAsync(TimeSpan.FromSeconds(10)));

            Assert.IsType<ObjectDisposedException>(ex);
            Assert.Equal(1, server.TokenRequests);
        }
        finally
        {
            provider.Dispose();
        }
    }
}
