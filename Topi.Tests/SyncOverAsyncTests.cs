using System.Collections.Concurrent;
using System.Net;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// Callers that block with <c>.GetAwaiter().GetResult()</c> under a single-threaded SynchronizationContext (classic
/// ASP.NET, WinForms, WPF) must not deadlock: every await inside the library has to leave that context alone.
/// </summary>
public sealed class SyncOverAsyncTests
{
    private static readonly TimeSpan Cap = TimeSpan.FromSeconds(30);

    // Runs `blocking` on the thread of a new single-threaded context, as a UI thread would run it, and returns its
    // outcome. Bounded by Cap, so that a deadlock fails the test instead of hanging it.
    private static async Task<T> RunBlockingOnContextAsync<T>(Func<T> blocking)
    {
        using var context = new HsSingleThreadContext();
        await context.RunBlocking(blocking, out Task<T> outcome).WaitAsync(Cap);
        return await outcome;
    }

    [Fact]
    public async Task Context_Itself_DeadlocksOnACapturedAwait()
    {
        // The control: proves the context is strict enough to catch a captured continuation, so the tests below
        // can fail. An await without ConfigureAwait(false) posts back to the blocked thread and never runs.
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

        string outcome = await RunBlockingOnContextAsync(() =>
        {
            async Task Captured() { await release.Task; }
            Task t = Captured();
            release.SetResult();
            return t.Wait(TimeSpan.FromMilliseconds(300)) ? "completed" : "deadlocked";
        });

        Assert.Equal("deadlocked", outcome);
    }

    [Fact]
    public async Task GetAsync_BlockingUnderSingleThreadContext_ColdCache_Completes()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 3, PageSize = 5 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        HsShippingMethodPage page = await RunBlockingOnContextAsync(
            () => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage).GetAwaiter().GetResult());

        Assert.Equal(3, page.Data!.Count);
        Assert.Equal(1, server.TokenRequests);
        Assert.Equal(1, server.ApiRequests);
    }

    [Fact]
    public async Task GetTokenAsync_BlockingUnderSingleThreadContext_ColdCache_Completes()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));

        TopiToken token = await RunBlockingOnContextAsync(() => provider.GetTokenAsync().AsTask().GetAwaiter().GetResult());

        Assert.Equal("Bearer", token.TokenType);
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetTokenAsync_BlockingWithTokenEndpointLatency_Completes()
    {
        await using var server = FakeTopiServer.Start();
        server.TokenLatency = TimeSpan.FromMilliseconds(50); // the renewal really is in flight when the caller blocks
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));

        TopiToken token = await RunBlockingOnContextAsync(() => provider.GetTokenAsync().AsTask().GetAwaiter().GetResult());

        Assert.NotNull(token);
    }

    [Fact]
    public async Task GetAllPagesAsync_BlockingUnderSingleThreadContext_Completes()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<string> ids = await RunBlockingOnContextAsync(() =>
        {
            var seen = new List<string>();
            IAsyncEnumerator<HsShippingMethod> e = client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod).GetAsyncEnumerator();
            try
            {
                while (e.MoveNextAsync().AsTask().GetAwaiter().GetResult()) seen.Add(e.Current.Id!);
            }
            finally
            {
                e.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }
            return seen;
        });

        Assert.Equal(server.ShippingMethods.Select(m => m.Id), ids);
        Assert.Equal(3, server.ApiRequests);
    }

    [Fact]
    public async Task UnauthorizedRetryPath_BlockingUnderSingleThreadContext_Completes()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        server.RevokeAllTokens();
        server.TokenLatency = TimeSpan.FromMilliseconds(20);

        HsShippingMethod created = await RunBlockingOnContextAsync(
            () => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath, new HsCreateShippingMethod { SellerShippingMethodReference = "SYNC-1" },
                HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod).GetAwaiter().GetResult());

        Assert.Equal("SYNC-1", created.SellerShippingMethodReference);
        Assert.Equal(2, server.ApiRequests);
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task RetryPath_BlockingUnderSingleThreadContext_Completes()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(503, "\"busy\""));
        server.EnqueueApiFault(FakeFault.Status(500, "{\"name\":\"x\",\"message\":\"y\",\"temporary\":true}", FakeTopiServer.GoaErrorContentType));

        HttpStatusCode status = await RunBlockingOnContextAsync(() => client.HttpClient.GetAsync("v1/shipping-method").GetAwaiter().GetResult().StatusCode);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(3, server.ApiRequests);
    }

    [Fact]
    public async Task ErrorPath_BlockingUnderSingleThreadContext_ThrowsTypedError()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        HttpStatusCode? status = await RunBlockingOnContextAsync(() =>
        {
            try
            {
                client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath, new HsCreateShippingMethod { SellerShippingMethodReference = FakeTopiServer.BridgesReference },
                    HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod).GetAwaiter().GetResult();
                return (HttpStatusCode?)null;
            }
            catch (TopiApiException ex)
            {
                return ex.StatusCode;
            }
        });

        Assert.Equal((HttpStatusCode)422, status);
    }
}

/// <summary>
/// A SynchronizationContext with one dedicated thread: posted callbacks run on it, one at a time, like a UI thread.
/// A callback that blocks blocks the context, so any continuation posted back to it cannot run.
/// </summary>
internal sealed class HsSingleThreadContext : SynchronizationContext, IDisposable
{
    private readonly BlockingCollection<(SendOrPostCallback Callback, object? State)> _queue = new();
    private readonly Thread _thread;

    public HsSingleThreadContext()
    {
        _thread = new Thread(Run) { IsBackground = true, Name = "HsSingleThreadContext" };
        _thread.Start();
    }

    public override void Post(SendOrPostCallback d, object? state)
    {
        try { _queue.Add((d, state)); }
        catch (InvalidOperationException) { /* disposed: drop it, as a closed UI would */ }
    }

    public override void Send(SendOrPostCallback d, object? state)
    {
        if (Thread.CurrentThread == _thread) { d(state); return; }
        using var done = new ManualResetEventSlim();
        Post(_ => { try { d(state); } finally { done.Set(); } }, null);
        done.Wait();
    }

    public override SynchronizationContext CreateCopy() => this;

    /// <summary>
    /// Runs <paramref name="blocking"/> on the context thread with the context installed. The returned task completes
    /// when it returns or throws (its outcome is in <paramref name="result"/>); a deadlock leaves it pending for good.
    /// </summary>
    public Task RunBlocking<T>(Func<T> blocking, out Task<T> result)
    {
        var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
        Post(_ =>
        {
            try { tcs.SetResult(blocking()); }
            catch (Exception ex) { tcs.SetException(ex); }
        }, null);
        result = tcs.Task;
        return tcs.Task.ContinueWith(static _ => { }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    public void Dispose() => _queue.CompleteAdding();

    private void Run()
    {
        SetSynchronizationContext(this);
        foreach (var (callback, state) in _queue.GetConsumingEnumerable()) callback(state);
    }
}
