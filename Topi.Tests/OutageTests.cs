using System.Globalization;
using System.Net;
using Topi.Testing;
using Topi.Tests.Support;
using Xunit.Abstractions;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>Issue 3: token endpoint retries within a renewal, Retry-After, and outage protection between renewals.</summary>
public sealed class OutageTests(ITestOutputHelper output)
{
    public static TheoryData<string> TransientFaults => new()
    {
        "503", "500", "502", "504", "408", "429", "drop", "html502", "html504", "oauth503",
    };

    public static TheoryData<string> PermanentFaults => new()
    {
        "invalid_client", "invalid_scope", "unauthorized_client", "invalid_request", "unsupported_grant_type",
        "400", "403", "404", "405", "html404", "422",
    };

    private static FakeFault Fault(string name) => name switch
    {
        "drop" => FakeFault.Drop(),
        "html502" => FakeFault.Html(502),
        "html504" => FakeFault.Html(504),
        "html404" => FakeFault.Html(404),
        "oauth503" => FakeFault.Json("{\"error\":\"temporarily_unavailable\",\"error_description\":\"maintenance\"}", 503),
        "invalid_client" => FakeFault.Json(FakeTopiServer.InvalidClientBody, 401),
        "invalid_scope" or "unauthorized_client" or "invalid_request" or "unsupported_grant_type" =>
            FakeFault.Json("{\"error\":\"" + name + "\",\"error_description\":\"no\"}", 400),
        _ => FakeFault.Status(int.Parse(name, CultureInfo.InvariantCulture), ""),
    };

    [Theory]
    [MemberData(nameof(TransientFaults))]
    public async Task Renewal_TransientFaultThenRecovery_IsRetriedAndSucceeds(string fault)
    {
        await using FakeTopiServer server = StartServer();
        server.EnqueueTokenFault(Fault(fault));
        server.EnqueueTokenFault(Fault(fault));
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(3, server.TokenRequests);
        Assert.Equal(1, server.TokensIssued);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Theory]
    [MemberData(nameof(TransientFaults))]
    public async Task Renewal_TransientFaultEveryAttempt_GivesUpAfterMaxTokenAttempts(string fault)
    {
        await using FakeTopiServer server = StartServer();
        for (int i = 0; i < 4; i++) server.EnqueueTokenFault(Fault(fault));
        using TopiTokenProvider provider = Provider(server);

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.True(ex.IsTransient);
        Assert.Equal(3, server.TokenRequests); // default MaxTokenAttempts
        Assert.Equal(1, server.PendingTokenFaults);
    }

    [Fact]
    public async Task Renewal_MaxTokenAttemptsConfigured_IsHonoured()
    {
        await using FakeTopiServer server = StartServer();
        server.TokenFailureRate = 1.0;
        using TopiTokenProvider five = Provider(server, configure: o => o.MaxTokenAttempts = 5);
        using TopiTokenProvider one = Provider(server, configure: o => o.MaxTokenAttempts = 1);

        await FailAsync(five);
        Assert.Equal(5, server.TokenRequests);
        await FailAsync(one);
        Assert.Equal(6, server.TokenRequests);
    }

    [Theory]
    [MemberData(nameof(PermanentFaults))]
    public async Task Renewal_OAuthErrorOrOther4xx_IsNeverRetried(string fault)
    {
        await using FakeTopiServer server = StartServer();
        server.EnqueueTokenFault(Fault(fault));
        using TopiTokenProvider provider = Provider(server);

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal(1, server.TokenRequests);
        Assert.False(ex.IsTransient);
        Assert.NotNull(ex.StatusCode);
        Assert.InRange((int)ex.StatusCode!.Value, 400, 499);
        if (fault.Contains('_')) Assert.Equal(fault, ex.Error);
    }

    [Fact]
    public async Task Renewal_EveryAttemptHangs_FailsAtTheRenewalDeadlineWithATimeout()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        TaskCompletionSource gate = HoldTokenEndpoint(server);
        using TopiTokenProvider provider = Provider(server, time, o => o.RequestTimeout = TimeSpan.FromSeconds(30));

        Task<TopiToken> call = provider.GetTokenAsync().AsTask();
        // Each attempt gets an equal share of what is left of the 30 s deadline: 10 s each.
        for (int attempt = 1; attempt <= 3; attempt++)
        {
            await TestSupport.EventuallyAsync(() => server.TokenRequests == attempt, "attempt " + attempt);
            time.Advance(TimeSpan.FromSeconds(9.9));
            Assert.False(call.IsCompleted);
            Assert.Equal(attempt, server.TokenRequests);
            time.Advance(TimeSpan.FromSeconds(0.1));
        }

        TopiAuthenticationException ex = await Assert.ThrowsAsync<TopiAuthenticationException>(() => call);
        Assert.True(ex.IsTransient);
        Assert.Null(ex.StatusCode);
        Assert.Contains("timed out", ex.Message);
        Assert.Equal(3, server.TokenRequests);
        gate.SetResult();
    }

    [Theory]
    [InlineData(429, false)]
    [InlineData(503, false)]
    [InlineData(429, true)]
    [InlineData(503, true)]
    public async Task Renewal_RetryAfter_NoRequestIsSentBeforeItExpires(int status, bool httpDate)
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        string retryAfter = httpDate ? (time.GetUtcNow() + TimeSpan.FromSeconds(5)).ToString("r", CultureInfo.InvariantCulture) : "5";
        server.EnqueueTokenFault(FakeFault.Status(status, "", "application/json", ("Retry-After", retryAfter)));
        List<TimeSpan> arrivals = RecordArrivals(server, time);
        using TopiTokenProvider provider = Provider(server, time);

        Task<TopiToken> call = provider.GetTokenAsync().AsTask();
        await AdvanceUntilCompleteAsync(time, call, server, noSecondRequestBefore: TimeSpan.FromSeconds(5));

        TopiToken token = await call;
        Assert.Equal(2, server.TokenRequests);
        Assert.True(arrivals[1] - arrivals[0] >= TimeSpan.FromSeconds(5), "second request after " + (arrivals[1] - arrivals[0]));
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Fact]
    public async Task Renewal_RetryAfterLongerThanMaxRetryDelay_IsCappedAndRetried()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Status(503, "", "application/json", ("Retry-After", "3600")));
        List<TimeSpan> arrivals = RecordArrivals(server, time);
        using TopiTokenProvider provider = Provider(server, time, o => o.MaxRetryDelay = TimeSpan.FromSeconds(2));

        Task<TopiToken> call = provider.GetTokenAsync().AsTask();
        await AdvanceUntilCompleteAsync(time, call, server, noSecondRequestBefore: TimeSpan.FromSeconds(2));

        Assert.NotNull(await call);
        Assert.Equal(2, server.TokenRequests);
        // Waited the cap (2 s; a little more in simulated time only if this machine is slow), not the hour asked for.
        Assert.InRange(arrivals[1] - arrivals[0], TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task Renewal_RetryAfterBeyondTheDeadline_FailsWithTheServersErrorAndSendsNothingBeforeItExpires()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Status(429, "{\"error\":\"slow_down\",\"error_description\":\"busy\"}", "application/json", ("Retry-After", "45")));
        // Defaults: 30 s deadline per renewal, Retry-After capped at 30 s: waiting would pass the deadline.
        using TopiTokenProvider provider = Provider(server, time, o => { o.RequestTimeout = TimeSpan.FromSeconds(30); o.MaxRetryDelay = TimeSpan.FromSeconds(30); });

        TopiAuthenticationException ex = await FailAsync(provider);

        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(HttpStatusCode.TooManyRequests, ex.StatusCode); // the server's answer is not lost
        Assert.Equal("slow_down", ex.Error);
        Assert.True(ex.IsTransient);
        await AssertNextRenewalOnlyAfterAsync(TimeSpan.FromSeconds(30), TimeSpan.FromSeconds(0.1), time, provider, server); // Retry-After, capped at 30 s
    }

    [Fact]
    public async Task OutagePause_RetryAfterLongerThanMaxRetryDelay_IsCapped()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Status(503, "", "application/json", ("Retry-After", "3600")));
        using TopiTokenProvider provider = Provider(server, time, o => { o.MaxTokenAttempts = 1; o.MaxRetryDelay = TimeSpan.FromSeconds(10); });

        await FailAsync(provider);
        TopiAuthenticationException paused = await AssertNextRenewalOnlyAfterAsync(TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(1), time, provider, server);

        Assert.NotNull(paused.InnerException);
    }

    [Fact]
    public async Task OutagePause_RetryAfterWithinMax_IsHonouredBetweenRenewals()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.EnqueueTokenFault(FakeFault.Status(429, "", "application/json", ("Retry-After", "7")));
        using TopiTokenProvider provider = Provider(server, time, o => o.MaxTokenAttempts = 1);

        await FailAsync(provider);

        await AssertNextRenewalOnlyAfterAsync(TimeSpan.FromSeconds(7), TimeSpan.FromSeconds(0.1), time, provider, server);
    }

    [Fact]
    public async Task OutagePause_AfterEachFailedRenewal_DoublesUpToMaxRetryDelay_AndCallersFailFast()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        for (int i = 0; i < 5; i++) server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\",\"error_description\":\"down " + i + "\"}", 400));
        using TopiTokenProvider provider = Provider(server, time, o => o.MaxRetryDelay = TimeSpan.FromSeconds(5));

        TopiAuthenticationException last = await FailAsync(provider);
        Assert.Equal(1, server.TokenRequests);
        double[] expectedPauses = [1, 2, 4, 5, 5]; // 1 s doubling, capped at MaxRetryDelay
        for (int renewal = 0; renewal < expectedPauses.Length; renewal++)
        {
            TimeSpan pause = TimeSpan.FromSeconds(expectedPauses[renewal]);
            time.Advance(pause - TimeSpan.FromMilliseconds(1));
            for (int caller = 0; caller < 20; caller++)
            {
                ValueTask<TopiToken> during = provider.GetTokenAsync();
                Assert.True(during.IsCompleted, "a caller during the pause fails fast");
                TopiAuthenticationException paused = await Assert.ThrowsAsync<TopiAuthenticationException>(async () => await during);
                Assert.Same(last, paused.InnerException);
                Assert.Equal(last.StatusCode, paused.StatusCode);
                Assert.Equal(last.Error, paused.Error);
            }
            Assert.Equal(renewal + 1, server.TokenRequests); // no request during the pause
            time.Advance(TimeSpan.FromMilliseconds(1));
            if (renewal < 4)
            {
                last = await FailAsync(provider);
                Assert.Contains("down " + (renewal + 1), last.ErrorDescription);
            }
            else
            {
                await provider.GetTokenAsync(); // the faults are used up: recovered
            }
            Assert.Equal(renewal + 2, server.TokenRequests);
        }

        // A success resets the schedule: the next failure pauses 1 s again.
        provider.Invalidate(await provider.GetTokenAsync());
        server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_request\"}", 400));
        await FailAsync(provider);
        time.Advance(TimeSpan.FromSeconds(1));
        await provider.GetTokenAsync();
        Assert.Equal(8, server.TokenRequests);
    }

    [Fact]
    public async Task Outage_32WorkersHammering_TokenRequestsStayWithinTheBackoffSchedule()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        server.TokenFailureRate = 1.0;
        using TopiTokenProvider provider = Provider(server, time); // 3 attempts per renewal, pauses 1, 2, 4, 8 ... s
        long calls = 0, failures = 0, successes = 0;
        using var stop = new CancellationTokenSource();
        Thread[] workers = Enumerable.Range(0, 32).Select(_ => new Thread(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    provider.GetTokenAsync().AsTask().GetAwaiter().GetResult();
                    Interlocked.Increment(ref successes);
                }
                catch (TopiAuthenticationException)
                {
                    Interlocked.Increment(ref failures);
                }
                Interlocked.Increment(ref calls);
                Thread.Yield();
            }
        }) { IsBackground = true }).ToArray();
        foreach (Thread worker in workers) worker.Start();
        try
        {
            for (int step = 0; step < 100; step++) // 10 s of outage, 100 ms apart
            {
                long before = Interlocked.Read(ref calls);
                time.Advance(TimeSpan.FromMilliseconds(100));
                await TestSupport.EventuallyAsync(() => Interlocked.Read(ref calls) >= before + 64 && server.TokenRequestsInFlight == 0, "workers saw the step");
            }
            int duringOutage = server.TokenRequests;
            long callsDuringOutage = Interlocked.Read(ref calls);

            // Renewals start no earlier than 0, 1, 3 and 7 s (pauses 1, 2, 4 s; the next would be at 15 s), 3 attempts each.
            const int bound = 4 * 3;
            output.WriteLine($"outage: {duringOutage} token requests for {callsDuringOutage} calls from 32 workers over 10 s (bound {bound})");
            Assert.InRange(duringOutage, 3, bound);
            Assert.Equal(0, Interlocked.Read(ref successes));
            Assert.True(callsDuringOutage > 100 * duringOutage, "callers fail fast instead of each sending a request");

            // Recovery: once the identity server is back, workers get a token after at most the current pause (8 s).
            server.TokenFailureRate = 0;
            for (int step = 0; step < 200 && Interlocked.Read(ref successes) == 0; step++)
            {
                long before = Interlocked.Read(ref calls);
                time.Advance(TimeSpan.FromMilliseconds(100));
                await TestSupport.EventuallyAsync(() => Interlocked.Read(ref calls) >= before + 64 && server.TokenRequestsInFlight == 0, "workers saw the step");
            }
            output.WriteLine($"recovered after {server.TokenRequests - duringOutage} more token request(s)");
            Assert.True(Interlocked.Read(ref successes) > 0);
            Assert.Equal(1, server.TokensIssued);
        }
        finally
        {
            stop.Cancel();
            foreach (Thread worker in workers) worker.Join(TimeSpan.FromSeconds(10));
        }
    }

    // After one failed renewal (one token request so far): until `pause` less `margin` has passed a caller fails fast,
    // without a request (its error is returned); once `pause` has passed, the next caller renews and gets a token.
    private static async Task<TopiAuthenticationException> AssertNextRenewalOnlyAfterAsync(TimeSpan pause, TimeSpan margin,
        ManualTimeProvider time, TopiTokenProvider provider, FakeTopiServer server)
    {
        time.Advance(pause - margin);
        TopiAuthenticationException paused = await FailAsync(provider);
        Assert.Equal(1, server.TokenRequests);
        time.Advance(margin);
        Assert.NotNull(await provider.GetTokenAsync());
        Assert.Equal(2, server.TokenRequests);
        return paused;
    }

    // Once the first attempt has been answered, advances the clock in 100 ms steps until `call` completes, checking that
    // the server saw no second token request before `noSecondRequestBefore`.
    private static async Task AdvanceUntilCompleteAsync(ManualTimeProvider time, Task call, FakeTopiServer server, TimeSpan noSecondRequestBefore)
    {
        await TestSupport.EventuallyAsync(() => server.TokenRequests >= 1 && server.TokenRequestsInFlight == 0, "the first attempt");
        long origin = time.GetTimestamp();
        while (time.GetElapsedTime(origin) < noSecondRequestBefore - TimeSpan.FromMilliseconds(100))
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            Assert.Equal(1, server.TokenRequests);
            Assert.False(call.IsCompleted);
        }
        for (int step = 0; step < 100 && !call.IsCompleted; step++)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            await TryEventuallyAsync(() => call.IsCompleted, 300);
        }
        Assert.True(call.IsCompleted, "the retry never happened");
    }
}
