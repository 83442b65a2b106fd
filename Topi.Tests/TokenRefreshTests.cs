using System.Collections.Concurrent;
using System.Net;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// Issue 3: refresh-ahead (no caller waits for a renewal), invisible background failures, expiry on both clocks,
/// and nothing ambient captured by the provider. With a 7200 s token, a 60 s skew and a 300 s refresh-ahead window
/// the token is renewed in the background from 6840 s and stops being used at 7140 s.
/// </summary>
public sealed class TokenRefreshTests
{
    private static readonly TimeSpan RenewPoint = TimeSpan.FromSeconds(6840);
    private static readonly TimeSpan UsableLifetime = TimeSpan.FromSeconds(7140);

    private static void Defaults(TopiOptions o)
    {
        o.ExpirySkew = TimeSpan.FromSeconds(60);
        o.RefreshAhead = TimeSpan.FromMinutes(5);
    }

    // So that each failed background renewal is one token request.
    private static void DefaultsWithOneAttemptPerRenewal(TopiOptions o)
    {
        Defaults(o);
        o.MaxTokenAttempts = 1;
    }

    [Fact]
    public async Task RefreshAhead_RenewPointReached_CallersGetTheCurrentTokenAndOneBackgroundRenewalStarts()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, Defaults);
        TopiToken current = await provider.GetTokenAsync();

        time.Advance(RenewPoint - TimeSpan.FromSeconds(1));
        Assert.Same(current, Peek(provider));
        Assert.Equal(1, server.TokenRequests);

        TaskCompletionSource gate = HoldTokenEndpoint(server);
        time.Advance(TimeSpan.FromSeconds(1));
        ValueTask<TopiToken> first = provider.GetTokenAsync();
        Assert.True(first.IsCompletedSuccessfully); // the first caller does not wait
        Assert.Same(current, await first);
        TopiToken?[] during = await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => Task.Run(() => Peek(provider))));
        Assert.All(during, t => Assert.Same(current, t));
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 2, "the background renewal reached the server");
        for (int i = 0; i < 100; i++) Assert.Same(current, Peek(provider));
        Assert.Equal(2, server.TokenRequests); // exactly one renewal, however many callers

        gate.SetResult();
        await TestSupport.EventuallyAsync(() => !ReferenceEquals(Peek(provider), current), "callers get the renewed token");
        TopiToken renewed = Peek(provider)!;

        Assert.NotNull(renewed);
        Assert.Equal(2, server.TokenRequests);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, renewed.AccessToken));
        // The renewed token has a full lifetime of its own: nothing more until its own renew point.
        time.Advance(RenewPoint - TimeSpan.FromSeconds(1));
        Assert.Same(renewed, Peek(provider));
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task RefreshAhead_BackgroundRenewalFails_IsInvisibleAndRetriedAfterThePause()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, DefaultsWithOneAttemptPerRenewal);
        TopiToken current = await provider.GetTokenAsync();
        List<TimeSpan> arrivals = RecordArrivals(server, time);
        server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\",\"error_description\":\"try later\"}", 400));

        time.Advance(RenewPoint);
        Assert.Same(current, await provider.GetTokenAsync());
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 2 && server.TokenRequestsInFlight == 0, "the failing background renewal");
        for (int i = 0; i < 100; i++) Assert.Same(current, await provider.GetTokenAsync()); // the failure is invisible

        // No retry before the pause (1 s) has passed; then one retry, which succeeds.
        for (int step = 0; step < 9; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            Assert.Same(current, await provider.GetTokenAsync());
        }
        for (int step = 0; step < 30 && server.TokenRequests < 3; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            Assert.Same(current, await provider.GetTokenAsync());
            await TryEventuallyAsync(() => server.TokenRequests >= 3, 200);
        }
        await TestSupport.EventuallyAsync(() => !ReferenceEquals(Peek(provider), current), "callers get the renewed token");

        TimeSpan[] seen;
        lock (arrivals) seen = arrivals.ToArray();
        Assert.Equal(2, seen.Length);
        // Not before the 1 s pause; soon after it (a little later in simulated time only if this machine is slow).
        Assert.InRange(seen[1] - seen[0], TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3));
        Assert.Equal(3, server.TokenRequests);
    }

    [Fact]
    public async Task RefreshAhead_RenewalsKeepFailing_OnlyACallerWithNoValidTokenSeesTheError()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, DefaultsWithOneAttemptPerRenewal);
        TopiToken current = await provider.GetTokenAsync();
        server.TokenFailureRate = 1.0;

        time.Advance(RenewPoint);
        for (TimeSpan t = RenewPoint; t < UsableLifetime; t += TimeSpan.FromSeconds(10))
        {
            int before = server.TokenRequests;
            Assert.Same(current, await provider.GetTokenAsync()); // never an error while the token is valid
            // The call may have started a background renewal (or not, during a pause): let it reach the server and fail.
            if (await TryEventuallyAsync(() => server.TokenRequests > before, 100))
                await TestSupport.EventuallyAsync(() => server.TokenRequestsInFlight == 0, "the renewal was answered");
            time.Advance(TimeSpan.FromSeconds(10));
        }
        int requestsWhileValid = server.TokenRequests - 1;

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, ex.StatusCode);
        Assert.True(ex.IsTransient);
        // Callers come every 10 s for 300 s; renewals are paused 1, 2, 4, 8, 16, then 30 s after each failure, so they
        // can start no earlier than at 6840, 6850, 6860, 6870, 6880, 6900, 6930, 6960 ... 7110 s: at most 13 requests
        // (one per 10 s step, 30, without the growing pause).
        Assert.InRange(requestsWhileValid, 5, 13);
    }

    [Fact]
    public async Task BackgroundRenewalFailure_IsNotAnUnobservedTaskException()
    {
        string marker = Guid.NewGuid().ToString("N");
        var unobserved = new ConcurrentQueue<Exception>();
        EventHandler<UnobservedTaskExceptionEventArgs> handler = (_, e) =>
        {
            if (e.Exception.ToString().Contains(marker, StringComparison.Ordinal)) unobserved.Enqueue(e.Exception);
        };
        TaskScheduler.UnobservedTaskException += handler;
        try
        {
            var time = new ManualTimeProvider();
            await using FakeTopiServer server = StartServer(time);
            using TopiTokenProvider provider = Provider(server, time, DefaultsWithOneAttemptPerRenewal);
            TopiToken current = await provider.GetTokenAsync();
            server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\",\"error_description\":\"" + marker + "\"}", 400));

            time.Advance(RenewPoint);
            Assert.Same(current, await provider.GetTokenAsync());
            await TestSupport.EventuallyAsync(() => server.TokenRequests == 2 && server.PendingTokenFaults == 0 && server.TokenRequestsInFlight == 0, "the failing background renewal");
            Assert.Same(current, await provider.GetTokenAsync());

            for (int i = 0; i < 20 && unobserved.IsEmpty; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                await Task.Yield();
            }
            Assert.Empty(unobserved);
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= handler;
        }
    }

    [Theory]
    [InlineData(2 * 3600, "the wall clock was set forward")]
    [InlineData(3 * 3600, "the machine slept: the monotonic clock stopped, the wall clock went on")]
    public async Task WallClock_PastExpiryWhileMonotonicBarelyMoves_TokenIsTreatedAsExpiredAtTheNextTick(int wallSeconds, string scenario)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, Defaults);
        TopiToken stale = await provider.GetTokenAsync();

        time.JumpWallClock(TimeSpan.FromSeconds(wallSeconds));
        time.Advance(TimeSpan.FromSeconds(1)); // the next timer tick
        TopiToken fresh = await provider.GetTokenAsync();

        Assert.False(ReferenceEquals(stale, fresh), scenario + ": the stale token was still served");
        Assert.True(server.TokenRequests == 2, scenario + ": expected exactly one renewal, saw " + (server.TokenRequests - 1));
        Assert.Equal(HttpStatusCode.Unauthorized, await ProbeApiAsync(server, stale.AccessToken)); // why it matters: the server says so too
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, fresh.AccessToken));
    }

    [Fact]
    public async Task WallClock_IntoTheRenewWindowOnly_RenewsInTheBackground()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, Defaults);
        TopiToken current = await provider.GetTokenAsync();

        time.JumpWallClock(RenewPoint + TimeSpan.FromSeconds(10));
        time.Advance(TimeSpan.FromSeconds(1));

        Assert.Same(current, Peek(provider)); // still valid: served at once
        await TestSupport.EventuallyAsync(() => !ReferenceEquals(Peek(provider), current), "the background renewal");
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task MonotonicClock_PastExpiryWhileTheWallClockWasSetBack_TokenIsExpired()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        using TopiTokenProvider provider = Provider(server, time, SkewWithoutRefreshAhead);
        TopiToken stale = await provider.GetTokenAsync();

        time.JumpWallClock(TimeSpan.FromHours(-3));
        time.Advance(UsableLifetime - TimeSpan.FromSeconds(1));
        Assert.Same(stale, Peek(provider));
        time.Advance(TimeSpan.FromSeconds(1));
        TopiToken fresh = await provider.GetTokenAsync();

        Assert.NotSame(stale, fresh);
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task AmbientContextAtConstructionAndFirstCall_DoesNotReachOrBreakLaterRenewals()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        var ambient = new AsyncLocal<string?>();
        var seenBySends = new ConcurrentQueue<string?>();
        using var inner = new SocketsHttpHandler { AllowAutoRedirect = false };
        using var spy = new SpyHandler(inner, () => seenBySends.Enqueue(ambient.Value));
        // A caller's world at construction and first call: an AsyncLocal, a synchronization context nobody pumps,
        // and an already-cancelled token. The AsyncLocal stays set for the whole test.
        ambient.Value = "caller-context";
        TopiOptions options = TestSupport.OptionsFor(server, time);
        Defaults(options);
        TopiTokenProvider provider;
        ValueTask<TopiToken> cancelledCall;
        SynchronizationContext? previous = SynchronizationContext.Current;
        SynchronizationContext.SetSynchronizationContext(new DeadSynchronizationContext());
        try
        {
            provider = new TopiTokenProvider(options, spy);
            cancelledCall = provider.GetTokenAsync(new CancellationToken(true));
        }
        finally
        {
            SynchronizationContext.SetSynchronizationContext(previous);
        }
        using (provider)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await cancelledCall);

            TopiToken first = await provider.GetTokenAsync(); // joins the renewal the cancelled caller started
            time.Advance(RenewPoint);
            Assert.Same(first, await provider.GetTokenAsync()); // starts a background renewal
            await TestSupport.EventuallyAsync(() => !ReferenceEquals(Peek(provider), first), "the background renewal");
            TopiToken second = Peek(provider)!;
            provider.Invalidate(second);
            TopiToken third = await provider.GetTokenAsync(); // a renewal a caller waits for

            Assert.NotSame(second, third);
            Assert.Equal(3, server.TokenRequests);
            Assert.Equal(3, seenBySends.Count);
            Assert.All(seenBySends, v => Assert.Null(v)); // no caller's context reaches the shared request
        }
    }

    private sealed class SpyHandler(HttpMessageHandler inner, Action onSend) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            onSend();
            return base.SendAsync(request, cancellationToken);
        }
    }

    /// <summary>A synchronization context whose posts never run: anything that captured it would hang.</summary>
    private sealed class DeadSynchronizationContext : SynchronizationContext
    {
        public override void Post(SendOrPostCallback d, object? state) { }

        public override void Send(SendOrPostCallback d, object? state) => throw new InvalidOperationException("dead context");
    }
}
