using System.Net;
using System.Net.Http.Headers;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>Small helpers shared by the token provider test files (TokenAcquisition, TokenResponseParsing,
/// TokenCache, TokenRefresh, Outage, SecretLeak, OptionsValidation).</summary>
internal static class TokenTestKit
{
    /// <summary>A secret with every character that needs form-encoding: '@', ':', '/', '+', non-ASCII, '%', '&amp;', '='.</summary>
    public const string FancySecret = "p@ss:w/rd+ü%&=";

    /// <summary><see cref="FancySecret"/> as application/x-www-form-urlencoded (RFC 3986 escapes, UTF-8), written out by hand.</summary>
    public const string FancySecretFormEncoded = "p%40ss%3Aw%2Frd%2B%C3%BC%25%26%3D";

    /// <summary>A client id with a space and a colon, which must be form-encoded too.</summary>
    public const string FancyClientId = "my client:id";

    /// <summary><see cref="FancyClientId"/> form-encoded, written out by hand.</summary>
    public const string FancyClientIdFormEncoded = "my+client%3Aid";

    /// <summary>Starts a fake server on <paramref name="time"/> (the same clock the client will use).</summary>
    public static FakeTopiServer StartServer(TimeProvider? time = null, TimeSpan? lifetime = null, string clientId = "test-client",
        string clientSecret = "test-secret", string environment = "sandbox") =>
        FakeTopiServer.Start(new FakeTopiServerOptions
        {
            TimeProvider = time ?? TimeProvider.System,
            TokenLifetime = lifetime ?? TimeSpan.FromSeconds(7200),
            ClientId = clientId,
            ClientSecret = clientSecret,
            EnvironmentName = environment,
        });

    /// <summary>A provider for <paramref name="server"/> with its credentials (RetryBaseDelay 0), adjusted by <paramref name="configure"/>.</summary>
    public static TopiTokenProvider Provider(FakeTopiServer server, TimeProvider? time = null, Action<TopiOptions>? configure = null)
    {
        TopiOptions options = TestSupport.OptionsFor(server, time);
        configure?.Invoke(options);
        return new TopiTokenProvider(options);
    }

    /// <summary>A 60 s expiry skew and no refresh-ahead: a token is served from the cache until 60 s before it expires, then
    /// the next caller renews it.</summary>
    public static void SkewWithoutRefreshAhead(TopiOptions options)
    {
        options.ExpirySkew = TimeSpan.FromSeconds(60);
        options.RefreshAhead = TimeSpan.Zero;
    }

    /// <summary>Holds every token request at the server until the returned source is completed.</summary>
    public static TaskCompletionSource HoldTokenEndpoint(FakeTopiServer server)
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        server.OnTokenRequest = () => gate.Task;
        return gate;
    }

    /// <summary>
    /// Records the time on <paramref name="time"/> (from now) at which each token request reaches the server. A request
    /// arrives no earlier than it was sent, so "arrived at or after T" proves "not sent before T" whatever the threads' timing.
    /// </summary>
    public static List<TimeSpan> RecordArrivals(FakeTopiServer server, ManualTimeProvider time)
    {
        var arrivals = new List<TimeSpan>();
        long origin = time.GetTimestamp();
        server.OnTokenRequest = () =>
        {
            lock (arrivals) arrivals.Add(time.GetElapsedTime(origin));
            return Task.CompletedTask;
        };
        return arrivals;
    }

    /// <summary>The token a call returns synchronously (cache hit or refresh-ahead), or null when the call would wait.</summary>
    public static TopiToken? Peek(TopiTokenProvider provider)
    {
        ValueTask<TopiToken> pending = provider.GetTokenAsync();
        if (pending.IsCompletedSuccessfully) return pending.Result;
        // Observe whatever it ends with, so nothing surfaces as an unobserved task exception.
        _ = pending.AsTask().ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        return null;
    }

    /// <summary>Calls GetTokenAsync and returns the TopiAuthenticationException it must throw.</summary>
    public static Task<TopiAuthenticationException> FailAsync(TopiTokenProvider provider, CancellationToken cancellationToken = default) =>
        Assert.ThrowsAsync<TopiAuthenticationException>(async () => await provider.GetTokenAsync(cancellationToken));

    /// <summary>Polls <paramref name="condition"/> for at most <paramref name="timeoutMs"/>; false when it never held.</summary>
    public static async Task<bool> TryEventuallyAsync(Func<bool> condition, int timeoutMs)
    {
        long deadline = Environment.TickCount64 + timeoutMs;
        while (!condition())
        {
            if (Environment.TickCount64 > deadline) return false;
            await Task.Delay(2);
        }
        return true;
    }

    /// <summary>Sends <c>GET /v1/shipping-method</c> to <paramref name="server"/> with <paramref name="accessToken"/> and returns the status.</summary>
    public static async Task<HttpStatusCode> ProbeApiAsync(FakeTopiServer server, string accessToken)
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(server.BaseAddress, "v1/shipping-method?page=0"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", accessToken);
        using HttpResponseMessage response = await http.SendAsync(request);
        return response.StatusCode;
    }

    /// <summary>The message and ToString of an exception and of every inner exception (aggregates included).</summary>
    public static IEnumerable<string> Texts(Exception? ex)
    {
        var pending = new Stack<Exception>();
        if (ex is not null) pending.Push(ex);
        while (pending.Count > 0)
        {
            Exception e = pending.Pop();
            yield return e.Message;
            yield return e.ToString();
            if (e is AggregateException aggregate)
                foreach (Exception inner in aggregate.InnerExceptions) pending.Push(inner);
            else if (e.InnerException is not null) pending.Push(e.InnerException);
        }
    }
}
