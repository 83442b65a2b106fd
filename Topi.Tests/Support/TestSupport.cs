using Topi.Testing;

namespace Topi.Tests.Support;

/// <summary>Small helpers shared by the test files.</summary>
public static class TestSupport
{
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
    public static async Task EventuallyAsync(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline) throw new Xunit.Sdk.XunitException("Timed out waiting for: " + what);
            await Task.Delay(5);
        }
    }
}
