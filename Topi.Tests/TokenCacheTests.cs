using System.Net;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>One cached token per provider: reuse, coalescing, expiry and skew, invalidation, cancellation, failure, disposal.</summary>
public sealed class TokenCacheTests
{
    [Fact]
    public async Task GetTokenAsync_SecondCall_IsServedFromCacheSynchronously()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);
        TopiToken first = await provider.GetTokenAsync();

        ValueTask<TopiToken> second = provider.GetTokenAsync();

        Assert.True(second.IsCompletedSuccessfully);
        Assert.Same(first, await second);
        for (int i = 0; i < 1000; i++) Assert.Same(first, Peek(provider));
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_200ConcurrentColdCallers_SendExactlyOneTokenRequest()
    {
        await using FakeTopiServer server = StartServer();
        TaskCompletionSource gate = HoldTokenEndpoint(server);
        using TopiTokenProvider provider = Provider(server);

        Task<TopiToken>[] callers = Enumerable.Range(0, 200).Select(_ => Task.Run(() => provider.GetTokenAsync().AsTask())).ToArray();
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 1, "the token request reached the server");
        // Every caller has either joined the held request or is still being scheduled: none has a token yet.
        Assert.DoesNotContain(callers, c => c.IsCompleted);
        gate.SetResult();
        TopiToken[] tokens = await Task.WhenAll(callers);

        Assert.All(tokens, t => Assert.Same(tokens[0], t));
        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(1, server.MaxConcurrentTokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_BeforeLifetimeMinusSkew_ReusesToken_AndAtItRenews()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, TimeSpan.FromSeconds(7200));
        using TopiTokenProvider provider = Provider(server, time, SkewWithoutRefreshAhead);
        TopiToken first = await provider.GetTokenAsync();

        time.Advance(TimeSpan.FromSeconds(7139));
        Assert.Same(first, Peek(provider));
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, first.AccessToken)); // the server agrees it is still valid
        Assert.Equal(1, server.TokenRequests);

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(Peek(provider)); // 7140 s = lifetime - skew: no longer served from the cache
        TopiToken second = await provider.GetTokenAsync();

        Assert.NotSame(first, second);
        Assert.Equal(2, server.TokenRequests);
        Assert.Equal(0, server.ExpiredTokenRequests);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, second.AccessToken));
    }

    [Fact]
    public async Task GetTokenAsync_ShortLivedTokenWithLargeSkew_SkewIsClampedToHalfTheLifetime()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time, TimeSpan.FromSeconds(5));
        using TopiTokenProvider provider = Provider(server, time, SkewWithoutRefreshAhead);

        int calls = 0;
        for (int step = 0; step <= 100; step++) // 10 s of simulated time, 100 ms apart
        {
            TopiToken token = await provider.GetTokenAsync();
            Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
            calls++;
            time.Advance(TimeSpan.FromMilliseconds(100));
        }

        // Usable for 5 s - min(60 s, 2.5 s) = 2.5 s: a request at 0, 2.5, 5, 7.5 and 10 s at most.
        Assert.Equal(101, calls);
        Assert.InRange(server.TokenRequests, 4, 5);
        Assert.Equal(0, server.ExpiredTokenRequests);
    }

    [Fact]
    public async Task Invalidate_CurrentToken_ForcesExactlyOneRenewal()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);
        TopiToken first = await provider.GetTokenAsync();

        provider.Invalidate(first);
        TopiToken second = await provider.GetTokenAsync();
        TopiToken third = await provider.GetTokenAsync();

        Assert.NotSame(first, second);
        Assert.Same(second, third);
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task Invalidate_50ConcurrentCallsForTheSameToken_CauseOneRenewal()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);
        TopiToken first = await provider.GetTokenAsync();
        TaskCompletionSource gate = HoldTokenEndpoint(server);

        Task<TopiToken>[] callers = Enumerable.Range(0, 50).Select(_ => Task.Run(async () =>
        {
            provider.Invalidate(first);
            return await provider.GetTokenAsync();
        })).ToArray();
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 2, "the renewal reached the server");
        gate.SetResult();
        TopiToken[] tokens = await Task.WhenAll(callers);
        // Late invalidations of the old token, after the renewal, change nothing.
        for (int i = 0; i < 50; i++) provider.Invalidate(first);

        Assert.All(tokens, t => Assert.NotSame(first, t));
        Assert.All(tokens, t => Assert.Same(tokens[0], t));
        Assert.Same(tokens[0], Peek(provider));
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task Invalidate_OldTokenAfterANewerOneIsCached_IsANoOp()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);
        TopiToken first = await provider.GetTokenAsync();
        provider.Invalidate(first);
        TopiToken second = await provider.GetTokenAsync();

        provider.Invalidate(first);

        Assert.Same(second, Peek(provider));
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task Invalidate_AnUnrelatedTokenWithTheSameValue_IsANoOp()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);
        TopiToken cached = await provider.GetTokenAsync();

        provider.Invalidate(new TopiToken(cached.AccessToken, cached.ExpiresAt, cached.Scopes));

        Assert.Same(cached, Peek(provider));
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_OneCallerCancels_OnlyItsWaitEnds()
    {
        await using FakeTopiServer server = StartServer();
        TaskCompletionSource gate = HoldTokenEndpoint(server);
        using TopiTokenProvider provider = Provider(server);
        using var cancelled = new CancellationTokenSource();

        Task<TopiToken> quitter = provider.GetTokenAsync(cancelled.Token).AsTask();
        Task<TopiToken> patient = provider.GetTokenAsync().AsTask();
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 1, "the shared request reached the server");
        cancelled.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => quitter);
        Assert.False(patient.IsCompleted);
        gate.SetResult();
        TopiToken token = await patient;

        Assert.Same(token, Peek(provider));
        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(1, server.TokensIssued);
    }

    [Fact]
    public async Task GetTokenAsync_AlreadyCancelledCaller_ThrowsButTheSharedRequestCompletes()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = Provider(server);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await provider.GetTokenAsync(new CancellationToken(true)));
        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(HttpStatusCode.OK, await ProbeApiAsync(server, token.AccessToken));
    }

    [Fact]
    public async Task GetTokenAsync_RequestFails_AllWaitingCallersFailAndNothingIsCached()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        TaskCompletionSource gate = HoldTokenEndpoint(server);
        server.EnqueueTokenFault(FakeFault.Json(FakeTopiServer.InvalidClientBody, 401));
        using TopiTokenProvider provider = Provider(server, time);

        Task<TopiToken>[] callers = Enumerable.Range(0, 20).Select(_ => provider.GetTokenAsync().AsTask()).ToArray();
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 1, "the shared request reached the server");
        gate.SetResult();

        foreach (Task<TopiToken> caller in callers)
        {
            TopiAuthenticationException ex = await Assert.ThrowsAsync<TopiAuthenticationException>(() => caller);
            Assert.Equal("invalid_client", ex.Error);
        }
        Assert.Equal(1, server.TokenRequests);

        // Nothing was cached: after the outage pause (1 s) the next call makes a new request, which succeeds.
        time.Advance(TimeSpan.FromSeconds(1));
        TopiToken token = await provider.GetTokenAsync();
        Assert.Equal(2, server.TokenRequests);
        Assert.Same(token, Peek(provider));
    }

    [Fact]
    public async Task GetTokenAsync_AfterDispose_ThrowsObjectDisposed()
    {
        await using FakeTopiServer server = StartServer();
        TopiTokenProvider provider = Provider(server);
        await provider.GetTokenAsync();

        provider.Dispose();
        provider.Dispose(); // idempotent

        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await provider.GetTokenAsync());
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task Dispose_WhileARequestIsInFlight_EndsTheWaitingCallers()
    {
        await using FakeTopiServer server = StartServer();
        TaskCompletionSource gate = HoldTokenEndpoint(server);
        TopiTokenProvider provider = Provider(server);
        Task<TopiToken> waiting = provider.GetTokenAsync().AsTask();
        await TestSupport.EventuallyAsync(() => server.TokenRequests == 1, "the request reached the server");

        provider.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(TimeSpan.FromSeconds(10)));
        gate.SetResult();
    }

    [Fact]
    public async Task Options_MutatedAfterConstruction_HaveNoEffect()
    {
        var time = new ManualTimeProvider();
        await using FakeTopiServer server = StartServer(time);
        await using FakeTopiServer other = StartServer(time, clientId: "other", clientSecret: "other-secret", environment: "production");
        TopiOptions options = TestSupport.OptionsFor(server, time);
        options.ExpirySkew = TimeSpan.FromSeconds(60);
        options.RefreshAhead = TimeSpan.Zero;
        using var provider = new TopiTokenProvider(options);

        options.ClientId = "other";
        options.ClientSecret = "other-secret";
        options.Environment = TestSupport.EnvironmentFor(other);
        options.Scope = "something-else";
        options.ExpirySkew = TimeSpan.Zero;
        options.TimeProvider = TimeProvider.System;
        TopiToken first = await provider.GetTokenAsync();
        time.Advance(TimeSpan.FromSeconds(7140)); // still the copied skew (60 s) and the copied clock
        TopiToken second = await provider.GetTokenAsync();

        Assert.NotSame(first, second);
        Assert.Equal(2, server.TokenRequests);
        Assert.Equal(0, other.TokenRequests);
        Assert.All(server.Requests, r => Assert.Equal("grant_type=client_credentials&scope=client", r.BodyText));
        Assert.Equal("sandbox", provider.Environment.Name);
    }
}
