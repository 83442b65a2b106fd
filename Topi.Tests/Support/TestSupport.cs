using Topi.Testing;

namespace Topi.Tests.Support;

/// <summary>Small helpers shared by the test files.</summary>
public static class TestSupport
{
    /// <summary>
    /// Walks every page of <paramref name="path"/> with GetAllPagesAsync into <paramref name="items"/> (the caller's
    /// list, so a walk that fails half-way still shows what it yielded) and returns them. Fails the test past 100
    /// items, where a walk that should end would go on forever.
    /// </summary>
    public static async Task<List<HsShippingMethod>> WalkPagesAsync(TopiClient client, string path = FakeTopiServer.ShippingMethodsPath,
        int firstPage = 0, List<HsShippingMethod>? items = null)
    {
        items ??= new List<HsShippingMethod>();
        await foreach (HsShippingMethod item in client.GetAllPagesAsync(path, HsJsonContext.Default.HsShippingMethod, firstPage))
        {
            items.Add(item);
            Assert.True(items.Count <= 100, "the walk went on past 100 items");
        }
        return items;
    }

    /// <summary>Client options pointing at <paramref name="server"/>, with its credentials.</summary>
    public static TopiOptions OptionsFor(FakeTopiServer server, TimeProvider? time = null) => new()
    {
        ClientId = server.ClientId,
        ClientSecret = server.ClientSecret,
        Environment = EnvironmentFor(server),
        TimeProvider = time ?? TimeProvider.System,
        // Retries wait nothing by default in tests; tests about backoff set their own delays.
        RetryBaseDelay = TimeSpan.Zero,
    };

    /// <summary>A custom <see cref="TopiEnvironment"/> for the fake server.</summary>
    public static TopiEnvironment EnvironmentFor(FakeTopiServer server) =>
        new(server.EnvironmentName, server.TokenEndpoint, server.BaseAddress);

    /// <summary>The API requests <paramref name="server"/> has seen (not the token requests), in order.</summary>
    public static List<RecordedRequest> ApiRequests(FakeTopiServer server) =>
        server.Requests.Where(r => r.Kind == FakeEndpointKind.Api).ToList();

    /// <summary>
    /// Waits until <paramref name="condition"/> holds, for work that finishes on another thread (a
    /// background renewal). The outcome is deterministic; only the wait is bounded.
    /// </summary>
    /// <param name="state">What the failure message shows of the state at the timeout, to tell why it never held.</param>
    public static async Task EventuallyAsync(Func<bool> condition, string what, int timeoutMs = 10_000, Func<string>? state = null)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline)
                throw new Xunit.Sdk.XunitException("Timed out waiting for: " + what + (state is null ? "" : " (" + state() + ")"));
            await Task.Delay(5);
        }
    }
}
