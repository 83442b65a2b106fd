using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// ActivityListener and MeterListener are process-wide: the telemetry tests run alone (after the parallel ones), and
/// spans are further filtered by a unique environment name.
/// </summary>
[CollectionDefinition("Telemetry", DisableParallelization = true)]
public sealed class TelemetryCollection
{
}

[Collection("Telemetry")]
public sealed class TelemetryTests
{
    private const string Secret = "p@ss:w/rd+ü%&=";

    private static string UniqueEnvironment() => "telemetry-" + Guid.NewGuid().ToString("N")[..10];

    private static FakeTopiServer StartServer(string environment, string? secret = null) =>
        FakeTopiServer.Start(new FakeTopiServerOptions { EnvironmentName = environment, ClientSecret = secret ?? "test-secret" });

    private static object? Tag(Activity a, string name) => a.GetTagItem(name);

    // A provider whose client secret the server refuses (401 invalid_client).
    private static TopiTokenProvider WrongSecretProvider(FakeTopiServer server) => TokenTestKit.Provider(server, configure: o => o.ClientSecret = "wrong");

    // POSTs the reference the fake refuses with a goa 422, and returns the TopiApiException that must come of it.
    private static Task<TopiApiException> CreateRefusedShippingMethodAsync(TopiClient client) =>
        Assert.ThrowsAsync<TopiApiException>(() => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath,
            new HsCreateShippingMethod { SellerShippingMethodReference = FakeTopiServer.BridgesReference },
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

    // The token instruments' totals since `metrics` was created (failures only when given).
    private static void AssertTokenMetrics(HsMetricsCollector metrics, double requests, double cacheMisses, int durations, double? failures = null)
    {
        Assert.Equal(requests, metrics.Sum("topi.token.requests"));
        Assert.Equal(cacheMisses, metrics.Sum("topi.token.cache_misses"));
        if (failures is double expectedFailures) Assert.Equal(expectedFailures, metrics.Sum("topi.token.failures"));
        Assert.Equal(durations, metrics.Count("topi.token.request.duration"));
    }

    [Fact]
    public async Task TokenRequest_TransientThenSuccess_OneSpanPerAttemptWithEnvironmentAttemptAndStatus()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        server.EnqueueTokenFault(FakeFault.Status(503, "{\"error\":\"temporarily_unavailable\"}"));
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));

        await provider.GetTokenAsync();

        var token = spans.Named("topi token request").OrderBy(a => (int)Tag(a, "topi.attempt")!).ToList();
        Assert.Equal(2, token.Count);
        Assert.All(token, a => Assert.Equal(ActivityKind.Client, a.Kind));
        Assert.All(token, a => Assert.Equal("Topi", a.Source.Name));
        Assert.Equal(1, Tag(token[0], "topi.attempt"));
        Assert.Equal(503, Tag(token[0], "http.response.status_code"));
        Assert.Equal(ActivityStatusCode.Error, token[0].Status);
        Assert.Equal(2, Tag(token[1], "topi.attempt"));
        Assert.Equal(200, Tag(token[1], "http.response.status_code"));
        Assert.NotEqual(ActivityStatusCode.Error, token[1].Status);
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task TokenRequest_Refused_SpanMarkedError()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        using var provider = WrongSecretProvider(server);

        await Assert.ThrowsAsync<TopiAuthenticationException>(() => provider.GetTokenAsync().AsTask());

        var span = Assert.Single(spans.Named("topi token request"));
        Assert.Equal(401, Tag(span, "http.response.status_code"));
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal(env, Tag(span, "topi.environment"));
    }

    [Fact]
    public async Task ApiRequest_RetriedGet_OneSpanWithMethodStatusAndAttempt()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(503, "\"busy\""));

        await client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage);

        var api = Assert.Single(spans.Named("topi api request"));
        Assert.Equal(ActivityKind.Client, api.Kind);
        Assert.Equal("GET", Tag(api, "http.request.method"));
        Assert.Equal(200, Tag(api, "http.response.status_code"));
        Assert.Equal(2, Tag(api, "topi.attempt"));
        Assert.Equal(env, Tag(api, "topi.environment"));
        Assert.NotEqual(ActivityStatusCode.Error, api.Status);
        Assert.Single(spans.Named("topi token request"));
    }

    [Fact]
    public async Task ApiRequest_ErrorStatus_SpanMarkedError()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        await CreateRefusedShippingMethodAsync(client);

        var api = Assert.Single(spans.Named("topi api request"));
        Assert.Equal("POST", Tag(api, "http.request.method"));
        Assert.Equal(422, Tag(api, "http.response.status_code"));
        Assert.Equal(1, Tag(api, "topi.attempt"));
        Assert.Equal(ActivityStatusCode.Error, api.Status);
    }

    [Fact]
    public async Task ApiRequest_401Renewal_SpanShowsSecondAttemptAndTwoTokenSpans()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        server.RevokeAllTokens();

        await client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage);

        var api = Assert.Single(spans.Named("topi api request"));
        Assert.Equal(2, Tag(api, "topi.attempt"));
        Assert.Equal(200, Tag(api, "http.response.status_code"));
        Assert.Equal(2, spans.Named("topi token request").Count);
    }

    // A request that finally fails without a response (every attempt dropped) is a failed operation: its span must
    // say so, as the token request's span does for the same failure.
    [Fact]
    public async Task ApiRequest_AllAttemptsDropped_SpanMarkedError()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env);
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        for (int i = 0; i < 3; i++) server.EnqueueApiFault(FakeFault.Drop());

        await Assert.ThrowsAnyAsync<Exception>(() => client.HttpClient.GetAsync("v1/shipping-method"));

        var api = Assert.Single(spans.Named("topi api request"));
        Assert.Equal(3, Tag(api, "topi.attempt"));
        Assert.Equal(ActivityStatusCode.Error, api.Status);
    }

    [Fact]
    public async Task Spans_NeverContainSecretOrToken()
    {
        string env = UniqueEnvironment();
        using var spans = new HsActivityCollector(env);
        await using var server = StartServer(env, Secret);
        server.ClientId = "client:ü+&=";
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        await client.GetAsync(FakeTopiServer.ShippingMethodsPath + "?page=0&access_token=leak", HsJsonContext.Default.HsShippingMethodPage);
        server.RevokeAllTokens();
        await client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage);
        await CreateRefusedShippingMethodAsync(client);
        server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"secret " + Secret + " rejected\"}", 401));
        var wrong = TestSupport.OptionsFor(server);
        using (var failing = new TopiTokenProvider(wrong))
            await Assert.ThrowsAsync<TopiAuthenticationException>(() => failing.GetTokenAsync().AsTask());

        var all = spans.All;
        Assert.True(all.Count >= 6, "expected at least 6 spans (3 token, 3 API), got " + all.Count);
        var tokens = HsAssert.IssuedTokens(server);
        Assert.Equal(2, tokens.Count);
        string basic = Convert.ToBase64String(Encoding.UTF8.GetBytes(Uri.EscapeDataString(server.ClientId) + ":" + Uri.EscapeDataString(Secret)));
        var forbidden = new List<string> { Secret, Uri.EscapeDataString(Secret), basic, "leak" };
        forbidden.AddRange(tokens);
        foreach (Activity a in all)
        {
            var texts = new List<string> { a.DisplayName, a.OperationName, a.StatusDescription ?? "" };
            texts.AddRange(a.TagObjects.Select(t => t.Key + "=" + t.Value));
            texts.AddRange(a.Baggage.Select(b => b.Key + "=" + b.Value));
            foreach (ActivityEvent e in a.Events)
            {
                texts.Add(e.Name);
                texts.AddRange(e.Tags.Select(t => t.Key + "=" + t.Value));
            }
            foreach (string text in texts)
                foreach (string secret in forbidden)
                    Assert.False(text.Contains(secret, StringComparison.Ordinal), "a span of '" + a.DisplayName + "' carries a secret or token");
        }
    }

    [Fact]
    public async Task Metrics_OneColdMissThenHits_CountOneRequestOneMiss()
    {
        string env = UniqueEnvironment();
        await using var server = StartServer(env);
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var metrics = new HsMetricsCollector();

        await provider.GetTokenAsync();
        for (int i = 0; i < 10; i++) await provider.GetTokenAsync();

        AssertTokenMetrics(metrics, requests: 1, cacheMisses: 1, failures: 0, durations: 1);
        double seconds = Assert.Single(metrics.Values("topi.token.request.duration"));
        Assert.True(seconds >= 0 && seconds < 30, "duration " + seconds);
    }

    [Fact]
    public async Task Metrics_ConcurrentColdCallers_OneRequestOneMissPerWaitingCaller()
    {
        string env = UniqueEnvironment();
        await using var server = StartServer(env);
        TaskCompletionSource gate = TokenTestKit.HoldTokenEndpoint(server);
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var metrics = new HsMetricsCollector();

        var callers = Enumerable.Range(0, 8).Select(_ => provider.GetTokenAsync().AsTask()).ToArray();
        await TestSupport.EventuallyAsync(() => server.TokenRequestsInFlight == 1, "the shared token request is in flight");
        gate.SetResult();
        await Task.WhenAll(callers);

        AssertTokenMetrics(metrics, requests: 1, cacheMisses: 8, durations: 1);
    }

    [Fact]
    public async Task Metrics_RefusedRenewal_CountsRequestMissAndFailureButNoDuration()
    {
        string env = UniqueEnvironment();
        await using var server = StartServer(env);
        using var provider = WrongSecretProvider(server);
        using var metrics = new HsMetricsCollector();

        await Assert.ThrowsAsync<TopiAuthenticationException>(() => provider.GetTokenAsync().AsTask());

        AssertTokenMetrics(metrics, requests: 1, cacheMisses: 1, failures: 1, durations: 0);
    }

    [Fact]
    public async Task Metrics_TransientAttemptThenSuccess_TwoRequestsNoFailure()
    {
        string env = UniqueEnvironment();
        await using var server = StartServer(env);
        server.EnqueueTokenFault(FakeFault.Html(502));
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var metrics = new HsMetricsCollector();

        await provider.GetTokenAsync();

        AssertTokenMetrics(metrics, requests: 2, cacheMisses: 1, failures: 0, durations: 1);
    }

    [Fact]
    public async Task Metrics_ApiRetries_CountEachRetry()
    {
        string env = UniqueEnvironment();
        await using var server = StartServer(env);
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        server.EnqueueApiFault(FakeFault.Status(503, "\"busy\""));
        server.EnqueueApiFault(FakeFault.Status(429, "\"slow\""));
        using var metrics = new HsMetricsCollector();

        using HttpResponseMessage response = await client.HttpClient.GetAsync("v1/shipping-method");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, metrics.Sum("topi.api.retries"));
        Assert.Equal(0, metrics.Sum("topi.token.requests"));
        Assert.Equal(0, metrics.Sum("topi.token.cache_misses"));
    }
}

/// <summary>Collects stopped activities of the "Topi" source whose <c>topi.environment</c> is the given one.</summary>
internal sealed class HsActivityCollector : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _stopped = new();

    public HsActivityCollector(string environment)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Topi",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.GetTagItem("topi.environment") as string == environment) _stopped.Enqueue(activity);
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public IReadOnlyList<Activity> All => _stopped.ToArray();

    public List<Activity> Named(string displayName) => _stopped.Where(a => a.DisplayName == displayName).ToList();

    public void Dispose() => _listener.Dispose();
}

/// <summary>Records every measurement of the "Topi" meter from its creation on (the deltas of one test).</summary>
internal sealed class HsMetricsCollector : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Name, double Value)> _measurements = new();

    public HsMetricsCollector()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Topi") listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, state) => _measurements.Enqueue((instrument.Name, value)));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, state) => _measurements.Enqueue((instrument.Name, value)));
        _listener.Start();
    }

    public double Sum(string name) => _measurements.Where(m => m.Name == name).Sum(m => m.Value);

    public int Count(string name) => _measurements.Count(m => m.Name == name);

    public List<double> Values(string name) => _measurements.Where(m => m.Name == name).Select(m => m.Value).ToList();

    public void Dispose() => _listener.Dispose();
}
