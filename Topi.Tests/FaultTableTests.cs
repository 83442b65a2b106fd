using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Topi.Testing;
using Topi.Tests.Support;
using Xunit.Abstractions;

namespace Topi.Tests;

/// <summary>
/// The fault table runs alone: it watches the process-global <see cref="TaskScheduler.UnobservedTaskException"/>
/// and a <see cref="MeterListener"/>, which other tests running at the same time would disturb.
/// </summary>
[CollectionDefinition("FaultTable", DisableParallelization = true)]
public sealed class FaultTableCollection
{
}

/// <summary>
/// Issue 3, "Fault table (tests)": one row per fault, against <see cref="FakeTopiServer"/> (real HTTP on
/// loopback) and, for transport faults, <see cref="RawFaultServer"/>. Each row names the fault, the
/// endpoint and the expected outcome (success after N requests, or a typed exception with status and
/// IsTransient within a deadline). Every row also checks: no hang (bounded), no unobserved task
/// exception, no secret or token in any exception message, and no API request with an expired token.
/// </summary>
[Collection("FaultTable")]
public sealed class FaultTableTests
{
    internal const string ClientId = "fault-table-client";

    /// <summary>A secret with every character that needs form- and percent-encoding.</summary>
    internal const string Secret = "p@ss:w/rd+ü%&=";

    /// <summary>Every row is bounded by this; a row that takes longer fails as a hang.</summary>
    private static readonly TimeSpan RowBound = TimeSpan.FromSeconds(15);

    /// <summary>
    /// Small, so that hanging endpoints end fast: each token attempt gets a third of it. At 2 s (667 ms per attempt) a
    /// CI run under coverage once timed out a first attempt that the server had answered, and the row saw a second
    /// token request; 4 s leaves each attempt 1.33 s, twice that, and still ends the hangs (10 s) well within RowBound.
    /// </summary>
    internal static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(4);

    private readonly ITestOutputHelper _output;

    public FaultTableTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<string, string, string> Rows => ToTheoryData(FaultTable.All);

    [Theory]
    [MemberData(nameof(Rows))]
    public Task FaultTable_Row_EndsAsExpected(string row, string endpoint, string expect) => RunRowAsync(row, endpoint, expect);

    [Fact]
    public void FaultTable_Rows_AreManyUniqueAndCoverBothEndpoints()
    {
        var names = FaultTable.All.Select(r => r.Name).ToList();
        Assert.Equal(names.Count, names.Distinct(StringComparer.Ordinal).Count());
        Assert.True(names.Count >= 25, "the issue asks for at least 25 faults; the table has " + names.Count);
        Assert.Contains(FaultTable.All, r => r.Endpoint == FaultEndpoint.Token && r.UsesRawServer);
        Assert.Contains(FaultTable.All, r => r.Endpoint == FaultEndpoint.Token && !r.UsesRawServer);
        Assert.Contains(FaultTable.All, r => r.Endpoint == FaultEndpoint.Api);
    }

    private static TheoryData<string, string, string> ToTheoryData(IEnumerable<FaultRow> rows)
    {
        var data = new TheoryData<string, string, string>();
        foreach (var row in rows)
        {
            data.Add(row.Name, row.Endpoint.ToString(), row.Expect.Describe());
        }

        return data;
    }

    private async Task RunRowAsync(string name, string endpoint, string expect)
    {
        var row = FaultTable.All.Single(r => r.Name == name);
        Assert.Equal(row.Endpoint.ToString(), endpoint);
        Assert.Equal(row.Expect.Describe(), expect);

        // Finalize what earlier rows and tests left behind, so that only this row's tasks can report.
        CollectAndFinalize();
        var unobserved = new ConcurrentQueue<string>();
        EventHandler<UnobservedTaskExceptionEventArgs> onUnobserved = (_, e) =>
        {
            var text = e.Exception.ToString();
            if (text.Contains("Topi", StringComparison.Ordinal))
            {
                unobserved.Enqueue(text);
            }
        };
        TaskScheduler.UnobservedTaskException += onUnobserved;
        try
        {
            await RunRowCoreAsync(row);

            // Every client and server of the row is disposed by now: a faulted task nobody awaited is garbage.
            CollectAndFinalize();
        }
        finally
        {
            TaskScheduler.UnobservedTaskException -= onUnobserved;
        }

        Assert.True(unobserved.IsEmpty, "unobserved task exception(s): " + string.Join(Environment.NewLine + "---" + Environment.NewLine, unobserved.Select(u => Redact(u))));
    }

    private async Task RunRowCoreAsync(FaultRow row)
    {
        var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientId = ClientId, ClientSecret = Secret, RandomSeed = 3 });
        var ctx = new FaultRowContext(server);
        Exception? caught = null;
        TimeSpan elapsed;
        try
        {
            row.Arrange?.Invoke(ctx);
            ctx.Client = ctx.InnerHandler is null ? new TopiClient(ctx.Options) : new TopiClient(ctx.Options, ctx.InnerHandler);
            ctx.StartedAt = DateTimeOffset.UtcNow;
            var stopwatch = Stopwatch.StartNew();
            var act = ActAsync(row, ctx);
            try
            {
                await act.WaitAsync(RowBound);
            }
            catch (TimeoutException) when (!act.IsCompleted)
            {
                Assert.Fail($"row '{row.Name}' hung: no outcome within {RowBound.TotalSeconds} s");
            }
            catch (Exception ex)
            {
                caught = ex;
            }

            elapsed = stopwatch.Elapsed;
            ctx.FinishedAt = DateTimeOffset.UtcNow;
            _output.WriteLine($"row: {row.Name}");
            _output.WriteLine($"outcome: {(caught is null ? "success" : caught.GetType().Name + (caught is TopiException t ? $" status={(int?)t.StatusCode} transient={t.IsTransient}" : "") + ": " + Redact(caught.Message, ctx))}");
            _output.WriteLine($"elapsed: {elapsed.TotalMilliseconds:F0} ms; token requests: {ctx.TokenRequests}; API requests: {ctx.ApiRequests}; expired-token API requests: {server.ExpiredTokenRequests}");

            // Secrets first: even an otherwise wrong outcome must not leak.
            AssertNoSecret(caught, ctx);
            row.Expect.Check(row.Name, caught, elapsed, ctx);
            Assert.Equal(0, server.ExpiredTokenRequests);
        }
        finally
        {
            ctx.Client?.Dispose();
            ctx.InnerHandler?.Dispose();
            if (ctx.Raw is not null)
            {
                await ctx.Raw.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
            }

            await server.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        }
    }

    private static async Task ActAsync(FaultRow row, FaultRowContext ctx)
    {
        switch (row.Act)
        {
            case FaultAct.Token:
                var token = await ctx.Client.TokenProvider.GetTokenAsync();
                ctx.Token = token;
                if (!row.UsesRawServer || ctx.RawIsApi)
                {
                    // The token must also be accepted by the API (the fake checks signature, environment and expiry).
                    await ctx.GetListAsync();
                }

                row.VerifyToken?.Invoke(ctx, token);
                break;
            case FaultAct.ApiGet:
                await ctx.GetListAsync();
                break;
            case FaultAct.ApiPost:
                await ctx.PostCreateAsync("FT-REF-1");
                break;
            case FaultAct.Custom:
                await row.Custom!(ctx);
                break;
            default:
                throw new InvalidOperationException("unknown act " + row.Act);
        }
    }

    private static void AssertNoSecret(Exception? caught, FaultRowContext ctx)
    {
        if (caught is null)
        {
            return;
        }

        var texts = new List<string> { caught.ToString() };
        var pending = new Stack<Exception>();
        pending.Push(caught);
        while (pending.Count > 0)
        {
            var ex = pending.Pop();
            texts.Add(ex.Message);
            if (ex is TopiAuthenticationException auth)
            {
                texts.Add(auth.ErrorDescription ?? "");
            }

            if (ex is AggregateException aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    pending.Push(inner);
                }
            }
            else if (ex.InnerException is not null)
            {
                pending.Push(ex.InnerException);
            }
        }

        foreach (var secret in ctx.Secrets())
        {
            foreach (var text in texts)
            {
                Assert.False(text.Contains(secret, StringComparison.Ordinal), "an exception message contains a secret or token (" + secret.Length + " chars, starts '" + secret[..Math.Min(3, secret.Length)] + "')");
            }
        }
    }

    /// <summary>Belt and braces for test output: cut anything secret or token-like before printing.</summary>
    private static string Redact(string text, FaultRowContext? ctx = null)
    {
        foreach (var secret in ctx?.Secrets() ?? FaultRowContext.StaticSecrets)
        {
            text = text.Replace(secret, "[secret]", StringComparison.Ordinal);
        }

        var jwt = text.IndexOf("eyJ", StringComparison.Ordinal);
        return jwt < 0 ? text : text[..jwt] + "[token-like text cut]";
    }

    internal static void CollectAndFinalize()
    {
        for (var i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }

        GC.Collect();
    }
}

internal enum FaultEndpoint
{
    Token,
    Api,
}

internal enum FaultAct
{
    /// <summary>TokenProvider.GetTokenAsync; on success, one GET of the list with the client (FakeTopiServer rows).</summary>
    Token,

    /// <summary>TopiClient GET of the shipping-method list (page 0).</summary>
    ApiGet,

    /// <summary>TopiClient POST of a new shipping method.</summary>
    ApiPost,

    /// <summary>A scripted scenario (manual clock and the like).</summary>
    Custom,
}

internal sealed class FaultRow
{
    public required string Name { get; init; }

    public required FaultEndpoint Endpoint { get; init; }

    public required FaultAct Act { get; init; }

    public required FaultExpect Expect { get; init; }

    public Action<FaultRowContext>? Arrange { get; init; }

    public Func<FaultRowContext, Task>? Custom { get; init; }

    public Action<FaultRowContext, TopiToken>? VerifyToken { get; init; }

    public bool UsesRawServer { get; init; }
}

/// <summary>The expected outcome of a row.</summary>
internal sealed class FaultExpect
{
    /// <summary>null: the act succeeds.</summary>
    public Type? Throws { get; init; }

    /// <summary>Whether a subclass of <see cref="Throws"/> is acceptable.</summary>
    public bool OrSubclass { get; init; }

    /// <summary>Expected StatusCode of the TopiException; 0 means "none" (null).</summary>
    public int? Status { get; init; }

    public bool? Transient { get; init; }

    public string? OAuthError { get; init; }

    public int? TokenRequests { get; init; }

    /// <summary>When set, <see cref="TokenRequests"/> is a minimum and this the maximum: how many attempts fit in a deadline depends on scheduling.</summary>
    public int? TokenRequestsMax { get; init; }

    public int? ApiRequests { get; init; }

    public TimeSpan MinElapsed { get; init; }

    public TimeSpan MaxElapsed { get; init; } = TimeSpan.FromSeconds(4);

    public static FaultExpect Success(int? tokenRequests, int? apiRequests, TimeSpan? min = null, TimeSpan? max = null, int? tokenRequestsMax = null) => new()
    {
        TokenRequests = tokenRequests,
        TokenRequestsMax = tokenRequestsMax,
        ApiRequests = apiRequests,
        MinElapsed = min ?? TimeSpan.Zero,
        MaxElapsed = max ?? TimeSpan.FromSeconds(4),
    };

    public static FaultExpect Auth(int? status, bool transient, int? tokenRequests, string? oauthError = null, TimeSpan? max = null, int? tokenRequestsMax = null) => new()
    {
        Throws = typeof(TopiAuthenticationException),
        Status = status,
        Transient = transient,
        OAuthError = oauthError,
        TokenRequests = tokenRequests,
        TokenRequestsMax = tokenRequestsMax,
        ApiRequests = 0,
        MaxElapsed = max ?? TimeSpan.FromSeconds(4),
    };

    public static FaultExpect Api(int status, bool transient, int? tokenRequests, int? apiRequests) => new()
    {
        Throws = typeof(TopiApiException),
        Status = status,
        Transient = transient,
        TokenRequests = tokenRequests,
        ApiRequests = apiRequests,
    };

    public string Describe()
    {
        var sb = new StringBuilder();
        if (Throws is null)
        {
            sb.Append("success");
        }
        else
        {
            sb.Append(Throws.Name).Append(OrSubclass ? "+" : "");
            if (Status is int status)
            {
                sb.Append(status == 0 ? " status=none" : " status=" + status.ToString(CultureInfo.InvariantCulture));
            }

            if (Transient is bool transient)
            {
                sb.Append(transient ? " transient" : " permanent");
            }

            if (OAuthError is not null)
            {
                sb.Append(" error=").Append(OAuthError);
            }
        }

        if (TokenRequests is int t)
        {
            sb.Append(", token requests=").Append(t);
            if (TokenRequestsMax is int tMax)
            {
                sb.Append("..").Append(tMax);
            }
        }

        if (ApiRequests is int a)
        {
            sb.Append(", API requests=").Append(a);
        }

        if (MinElapsed > TimeSpan.Zero)
        {
            sb.Append(", after >= ").Append(MinElapsed.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)).Append(" s");
        }

        sb.Append(", within ").Append(MaxElapsed.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)).Append(" s");
        return sb.ToString();
    }

    public void Check(string row, Exception? caught, TimeSpan elapsed, FaultRowContext ctx)
    {
        if (Throws is null)
        {
            if (caught is not null)
            {
                throw new Xunit.Sdk.XunitException($"row '{row}': expected success, got {caught.GetType().Name}: {caught.Message}");
            }
        }
        else
        {
            Assert.NotNull(caught);
            if (OrSubclass)
            {
                Assert.IsAssignableFrom(Throws, caught);
            }
            else
            {
                Assert.IsType(Throws, caught);
            }

            var topi = (TopiException)caught;
            if (Status is int status)
            {
                Assert.Equal(status == 0 ? null : (HttpStatusCode?)status, topi.StatusCode);
            }

            if (Transient is bool transient)
            {
                Assert.Equal(transient, topi.IsTransient);
            }

            if (OAuthError is not null)
            {
                Assert.Equal(OAuthError, Assert.IsType<TopiAuthenticationException>(caught).Error);
            }
        }

        if (TokenRequests is int tokenRequests)
        {
            if (TokenRequestsMax is int tokenRequestsMax)
            {
                Assert.InRange(ctx.TokenRequests, tokenRequests, tokenRequestsMax);
            }
            else
            {
                Assert.Equal(tokenRequests, ctx.TokenRequests);
            }
        }

        if (ApiRequests is int apiRequests)
        {
            Assert.Equal(apiRequests, ctx.ApiRequests);
        }

        Assert.True(elapsed >= MinElapsed, $"row '{row}' ended after {elapsed.TotalMilliseconds:F0} ms, before {MinElapsed.TotalMilliseconds:F0} ms");
        Assert.True(elapsed <= MaxElapsed, $"row '{row}' ended after {elapsed.TotalMilliseconds:F0} ms, past its deadline of {MaxElapsed.TotalMilliseconds:F0} ms");
    }
}

/// <summary>What a row's arrange step and act can reach.</summary>
internal sealed class FaultRowContext
{
    internal static readonly string[] StaticSecrets = BuildStaticSecrets();

    public FaultRowContext(FakeTopiServer server)
    {
        Server = server;
        Options = TestSupport.OptionsFor(server);
        Options.RequestTimeout = FaultTableTests.RequestTimeout;
        Options.RetryBaseDelay = TimeSpan.Zero;
    }

    public FakeTopiServer Server { get; }

    public RawFaultServer? Raw { get; private set; }

    public TopiOptions Options { get; }

    public FaultTableClock? Time { get; private set; }

    /// <summary>Set when the row needs a client on its own handler.</summary>
    public HttpMessageHandler? InnerHandler { get; set; }

    public TopiClient Client { get; set; } = null!;

    public TopiToken? Token { get; set; }

    public DateTimeOffset StartedAt { get; set; }

    public DateTimeOffset FinishedAt { get; set; }

    /// <summary>Extra strings no exception message may contain (e.g. an access token a fault body carries).</summary>
    public List<string> ExtraSecrets { get; } = new();

    /// <summary>Whether the raw server stands in for the Seller API (else for the token endpoint).</summary>
    public bool RawIsApi { get; private set; }

    /// <summary>Requests that reached the token endpoint (the raw server counts connections: one request each).</summary>
    public int TokenRequests => Raw is not null && !RawIsApi ? Raw.Connections : Server.TokenRequests;

    /// <summary>Requests that reached the Seller API.</summary>
    public int ApiRequests => Raw is not null && RawIsApi ? Raw.Connections : Server.ApiRequests;

    /// <summary>The raw server as the token endpoint; the fake server stays the API.</summary>
    public RawFaultServer UseRaw(RawFault fault)
    {
        Raw = RawFaultServer.Start(fault);
        Options.Environment = new TopiEnvironment("raw", Raw.TokenEndpoint, Server.BaseAddress);
        return Raw;
    }

    /// <summary>The raw server as the Seller API (it answers every path alike); the fake server stays the token endpoint.</summary>
    public RawFaultServer UseRawApi(RawFault fault)
    {
        Raw = RawFaultServer.Start(fault);
        RawIsApi = true;
        Options.Environment = new TopiEnvironment("raw-api", Server.TokenEndpoint, Raw.BaseAddress);
        return Raw;
    }

    public FaultTableClock UseManualClock()
    {
        Time = new FaultTableClock(new ManualTimeProvider());
        Options.TimeProvider = Time;
        return Time;
    }

    /// <summary>A handler that never reuses a connection, so .NET's own transparent retry of a request that failed on a reused connection cannot blur the request counts.</summary>
    public void UseFreshConnections() =>
        InnerHandler = new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.Zero };

    public Task<JsonElement> GetListAsync(CancellationToken cancellationToken = default) =>
        Client.GetAsync("v1/shipping-method?page=0", FaultTableJsonContext.Default.JsonElement, cancellationToken);

    public Task<JsonElement> PostCreateAsync(string reference) =>
        Client.PostJsonAsync("v1/shipping-method/method", new FaultTableCreateMethod(reference, "Fault Table Parcel", false),
            FaultTableJsonContext.Default.FaultTableCreateMethod, FaultTableJsonContext.Default.JsonElement);

    public IEnumerable<string> Secrets()
    {
        foreach (var s in StaticSecrets)
        {
            yield return s;
        }

        foreach (var s in ExtraSecrets)
        {
            yield return s;
        }

        // Every token the API saw (all fake tokens are JWTs starting "eyJ", already covered; this is exact).
        foreach (var request in Server.Requests)
        {
            var authorization = request.Header("Authorization");
            if (authorization is not null && authorization.StartsWith("Bearer ", StringComparison.Ordinal))
            {
                yield return authorization[7..];
            }
        }
    }

    private static string[] BuildStaticSecrets()
    {
        static string FormEncode(string value) => Uri.EscapeDataString(value).Replace("%20", "+", StringComparison.Ordinal);
        return
        [
            FaultTableTests.Secret,
            FormEncode(FaultTableTests.Secret),
            Convert.ToBase64String(Encoding.UTF8.GetBytes(FormEncode(FaultTableTests.ClientId) + ":" + FormEncode(FaultTableTests.Secret))),
            RawFaultServer.AccessToken,
            "eyJ", // the start of every JWT (base64url of '{"'): no message may carry a fake token or a piece of one
        ];
    }
}

/// <summary>
/// Counts failed token renewals through the library's <c>topi.token.failures</c> counter (incremented just
/// before the renewal task faults). The fault table runs alone, so no other test's renewals are counted.
/// </summary>
internal sealed class TopiRenewalFailureCounter : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _count;

    public TopiRenewalFailureCounter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Topi" && instrument.Name == "topi.token.failures")
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _count, value));
        _listener.Start();
    }

    public long Count => Interlocked.Read(ref _count);

    public void Dispose() => _listener.Dispose();
}

/// <summary>
/// Forwards to a <see cref="ManualTimeProvider"/> and records the due time of every timer created, so a
/// row can wait until the client has scheduled a given wait (say, a 20 s Retry-After) before moving the clock.
/// </summary>
internal sealed class FaultTableClock(ManualTimeProvider inner) : TimeProvider
{
    private readonly ConcurrentQueue<TimeSpan> _created = new();

    public ManualTimeProvider Inner { get; } = inner;

    public override long TimestampFrequency => Inner.TimestampFrequency;

    public override long GetTimestamp() => Inner.GetTimestamp();

    public override DateTimeOffset GetUtcNow() => Inner.GetUtcNow();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        _created.Enqueue(dueTime);
        return Inner.CreateTimer(callback, state, dueTime, period);
    }

    public bool CreatedTimer(TimeSpan dueTime) => _created.Contains(dueTime);

    public void Advance(TimeSpan by) => Inner.Advance(by);
}

internal sealed record FaultTableCreateMethod(
    [property: JsonPropertyName("seller_shipping_method_reference")] string Reference,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("is_in_store_pickup")] bool IsInStorePickup);

[JsonSerializable(typeof(JsonElement))]
[JsonSerializable(typeof(FaultTableCreateMethod))]
internal sealed partial class FaultTableJsonContext : JsonSerializerContext
{
}

/// <summary>The rows.</summary>
internal static class FaultTable
{
    private const string Oauth503 = "{\"error\":\"temporarily_unavailable\",\"error_description\":\"The authorization server is currently unable to handle the request.\"}";
    private const string GoaType = FakeTopiServer.GoaErrorContentType;

    internal static readonly IReadOnlyList<FaultRow> All = Build();

    private static string Goa(string name, bool temporary) =>
        "{\"name\":\"" + name + "\",\"id\":\"f4u1t7ab\",\"message\":\"" + name + " (fault table)\",\"temporary\":" + (temporary ? "true" : "false") + ",\"timeout\":false,\"fault\":true}";

    private static FakeFault TokenFault(int status) => status switch
    {
        500 => FakeFault.Status(500, "{\"error\":\"server_error\",\"error_description\":\"The authorization server encountered an unexpected condition.\"}", "application/json;charset=UTF-8"),
        502 => FakeFault.Status(502, "Bad Gateway", "text/plain"),
        503 => FakeFault.Status(503, Oauth503, "application/json;charset=UTF-8"),
        504 => FakeFault.Html(504),
        408 => FakeFault.Status(408, "", ""),
        429 => FakeFault.Status(429, "{\"error\":\"rate_limited\",\"error_description\":\"Too many requests.\"}", "application/json"),
        _ => throw new ArgumentOutOfRangeException(nameof(status)),
    };

    private static Action<FaultRowContext> Enqueue(FaultEndpoint endpoint, int times, Func<FakeFault> fault) => ctx =>
    {
        for (var i = 0; i < times; i++)
        {
            if (endpoint == FaultEndpoint.Token)
            {
                ctx.Server.EnqueueTokenFault(fault());
            }
            else
            {
                ctx.Server.EnqueueApiFault(fault());
            }
        }
    };

    private static Action<FaultRowContext, TopiToken> ExpiresAfter(TimeSpan lifetime) => (ctx, token) =>
    {
        // The client dates the token from just before it sent the request.
        Assert.InRange(token.ExpiresAt, ctx.StartedAt + lifetime - TimeSpan.FromMilliseconds(50), DateTimeOffset.UtcNow + lifetime);
    };

    private static IReadOnlyList<FaultRow> Build()
    {
        var rows = new List<FaultRow>();
        var timeoutDeadline = FaultTableTests.RequestTimeout + TimeSpan.FromSeconds(2);

        // ---- token endpoint: transient statuses -----------------------------------------------------
        foreach (var status in new[] { 500, 502, 503, 504, 408, 429 })
        {
            var s = status;
            rows.Add(new FaultRow
            {
                Name = $"token {s} on the first attempt only",
                Endpoint = FaultEndpoint.Token,
                Act = FaultAct.Token,
                Arrange = Enqueue(FaultEndpoint.Token, 1, () => TokenFault(s)),
                Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1),
            });
            rows.Add(new FaultRow
            {
                Name = $"token {s} on every attempt",
                Endpoint = FaultEndpoint.Token,
                Act = FaultAct.Token,
                Arrange = Enqueue(FaultEndpoint.Token, 3, () => TokenFault(s)),
                Expect = FaultExpect.Auth(s, transient: true, tokenRequests: 3, oauthError: s switch { 500 => "server_error", 503 => "temporarily_unavailable", 429 => "rate_limited", _ => null }),
            });
        }

        rows.Add(new FaultRow
        {
            Name = "token 503 with Retry-After 1 s, once",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Server.EnqueueTokenFault(FakeFault.Status(503, Oauth503, "application/json", ("Retry-After", "1"))),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1, min: TimeSpan.FromMilliseconds(950)),
        });

        rows.Add(new FaultRow
        {
            Name = "token 503 with Retry-After 20 s (manual clock): no request before it expires",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Custom,
            Arrange = ctx =>
            {
                ctx.UseManualClock();
                ctx.Options.RequestTimeout = TimeSpan.FromSeconds(90); // each attempt: 30 s, so 20 s timers are the Retry-After wait
                ctx.Server.EnqueueTokenFault(FakeFault.Status(503, Oauth503, "application/json", ("Retry-After", "20")));
            },
            Custom = ctx => RetryAfterOnManualClockAsync(ctx),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 0),
        });

        rows.Add(new FaultRow
        {
            Name = "token 503 with Retry-After as HTTP-date 20 s ahead (manual clock)",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Custom,
            Arrange = ctx =>
            {
                var time = ctx.UseManualClock();
                ctx.Options.RequestTimeout = TimeSpan.FromSeconds(90);
                var date = (time.GetUtcNow() + TimeSpan.FromSeconds(20)).ToString("r", CultureInfo.InvariantCulture);
                ctx.Server.EnqueueTokenFault(FakeFault.Status(503, Oauth503, "application/json", ("Retry-After", date)));
            },
            Custom = ctx => RetryAfterOnManualClockAsync(ctx),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 0),
            // Regression: the HTTP-date was once measured against the system clock, not TopiOptions.TimeProvider.
        });

        rows.Add(new FaultRow
        {
            Name = "token 503 with Retry-After 20 s past the deadline (manual clock): typed 503, renewal paused until it expires",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Custom,
            Arrange = ctx =>
            {
                ctx.UseManualClock();
                ctx.Options.RequestTimeout = TimeSpan.FromSeconds(10);
                ctx.Server.EnqueueTokenFault(FakeFault.Status(503, Oauth503, "application/json", ("Retry-After", "20")));
            },
            Custom = ctx => RetryAfterPastDeadlineAsync(ctx),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 0),
            // Regression: "retry would pass the deadline" once dropped StatusCode, Error and RetryAfter (so the pause was 1 s).
        });

        rows.Add(new FaultRow
        {
            Name = "token 429 with Retry-After 3600 s, capped by MaxRetryDelay 1 s",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx =>
            {
                ctx.Options.MaxRetryDelay = TimeSpan.FromSeconds(1);
                ctx.Options.RequestTimeout = TimeSpan.FromSeconds(5);
                ctx.Server.EnqueueTokenFault(FakeFault.Status(429, "{\"error\":\"rate_limited\"}", "application/json", ("Retry-After", "3600")));
            },
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1, min: TimeSpan.FromMilliseconds(950)),
            // Regression: the token retry once ignored MaxRetryDelay for Retry-After.
        });

        // ---- token endpoint: refusals and bad answers -------------------------------------------
        rows.Add(new FaultRow
        {
            Name = "token 401 invalid_client (wrong secret), not retried",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Server.ClientSecret = "the-server-expects-another-secret",
            Expect = FaultExpect.Auth(401, transient: false, tokenRequests: 1, oauthError: "invalid_client"),
        });

        rows.Add(new FaultRow
        {
            Name = "token 400 invalid_scope, not retried",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Options.Scope = "client seller-admin",
            Expect = FaultExpect.Auth(400, transient: false, tokenRequests: 1, oauthError: "invalid_scope"),
        });

        rows.Add(new FaultRow
        {
            Name = "token OAuth error inside a 200",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"Client authentication failed\"}")),
            Expect = FaultExpect.Auth(200, transient: false, tokenRequests: 1, oauthError: "invalid_client"),
        });

        rows.Add(new FaultRow
        {
            Name = "token HTML page with status 200",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Html(200)),
            Expect = FaultExpect.Auth(200, transient: false, tokenRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "token HTML page with status 502, once",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Html(502)),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "token HTML page with status 502, every attempt",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 3, () => FakeFault.Html(502)),
            Expect = FaultExpect.Auth(502, transient: true, tokenRequests: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "token 200 with an empty body",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Status(200, "", "application/json")),
            Expect = FaultExpect.Auth(200, transient: false, tokenRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "token 200 with a 5 MB body",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Oversized(5 * 1024 * 1024)),
            Expect = FaultExpect.Auth(null, transient: false, tokenRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "token 200 JSON cut off after a short access_token",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx =>
            {
                ctx.ExtraSecrets.Add("tok-7Qx3-short");
                ctx.Server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"tok-7Qx3-short\",\"token_type\":\"Bearer\",\"expires_in\":"));
            },
            Expect = FaultExpect.Auth(200, transient: false, tokenRequests: 1),
            // Regression: the "not a JSON token response" message quoted an excerpt of the body, redacting only
            // the client secret and 40+ character runs, so a shorter access_token read before the JSON broke leaked.
        });

        // ---- token endpoint: expires_in and token_type edge cases -----------------------------------
        // A usable expires_in sets the token's lifetime; zero or negative (lifetime null) is rejected.
        foreach (var (label, expiresInJson, lifetime) in new (string, string, TimeSpan?)[]
        {
            ("as a string \"3600\"", "\"3600\"", TimeSpan.FromSeconds(3600)),
            ("as a float 1.5", "1.5", TimeSpan.FromMilliseconds(1500)),
            ("zero", "0", null),
            ("negative", "-5", null),
            ("absurdly large 1e12, capped at 24 h", "1e12", TimeSpan.FromHours(24)),
        })
        {
            rows.Add(new FaultRow
            {
                Name = "token expires_in " + label,
                Endpoint = FaultEndpoint.Token,
                Act = FaultAct.Token,
                Arrange = ctx => ctx.Server.ExpiresInJson = expiresInJson,
                Expect = lifetime is null
                    ? FaultExpect.Auth(200, transient: false, tokenRequests: 1)
                    : FaultExpect.Success(tokenRequests: 1, apiRequests: 1),
                VerifyToken = lifetime is { } expected ? ExpiresAfter(expected) : null,
            });
        }

        rows.Add(new FaultRow
        {
            Name = "token expires_in absent",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Server.OmitExpiresIn = true,
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 1),
            VerifyToken = ExpiresAfter(TimeSpan.FromSeconds(7200)),
        });

        rows.Add(new FaultRow
        {
            Name = "token token_type lowercase bearer",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Server.TokenType = "bearer",
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 1),
        });

        // ---- token endpoint: connection faults and latency --------------------------------------------
        rows.Add(new FaultRow
        {
            Name = "token connection dropped, once",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, FakeFault.Drop),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "token connection dropped, every attempt",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 3, FakeFault.Drop),
            Expect = FaultExpect.Auth(0, transient: true, tokenRequests: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "token latency past the attempt's share of RequestTimeout, once",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = Enqueue(FaultEndpoint.Token, 1, () => FakeFault.Delay(TimeSpan.FromSeconds(10))),
            // The first attempt times out after its third of RequestTimeout; a later one succeeds.
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 1, max: timeoutDeadline, tokenRequestsMax: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "token latency past RequestTimeout, every attempt",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            Arrange = ctx => ctx.Server.TokenLatency = TimeSpan.FromSeconds(10),
            // Each attempt gets a share of RequestTimeout; how many start before the deadline depends on scheduling.
            Expect = FaultExpect.Auth(0, transient: true, tokenRequests: 1, max: timeoutDeadline, tokenRequestsMax: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "token latency past RequestTimeout, seen through a TopiClient GET",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.ApiGet,
            Arrange = ctx => ctx.Server.TokenLatency = TimeSpan.FromSeconds(10),
            // The HttpClient timeout and the renewal deadline are both RequestTimeout: either may win.
            Expect = new FaultExpect { Throws = typeof(TopiException), OrSubclass = true, Transient = true, ApiRequests = 0, MaxElapsed = timeoutDeadline },
            // Regression: when the HttpClient timeout (started first) wins, the caller's wait is cancelled and the
            // shared renewal faults with nobody awaiting it; that was once an unobserved task exception (racy to
            // reproduce: the renewal deadline sometimes wins). The next row is the deterministic version.
        });

        rows.Add(new FaultRow
        {
            Name = "token endpoint hangs and the only caller cancels: the renewal's later timeout is observed",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Custom,
            Arrange = ctx => ctx.Server.TokenLatency = TimeSpan.FromSeconds(10),
            Custom = async ctx =>
            {
                using var failures = new TopiRenewalFailureCounter();
                using var cts = new CancellationTokenSource();
                var call = ctx.GetListAsync(cts.Token);
                await TestSupport.EventuallyAsync(() => ctx.Server.TokenRequests == 1, "the token request reaches the server");
                cts.Cancel();
                await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
                Assert.Equal(0, failures.Count); // the renewal goes on without its caller ...
                await TestSupport.EventuallyAsync(() => failures.Count == 1, "the renewal times out");
                // ... and fails at its own deadline; the harness then checks nobody left that fault unobserved.
            },
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 0, max: timeoutDeadline, tokenRequestsMax: 3),
            // Regression: a renewal that failed after its waiters left was an unobserved task exception.
        });

        rows.Add(new FaultRow
        {
            Name = "token refresh-ahead renewal fails in the background (manual clock)",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Custom,
            Arrange = ctx => ctx.UseManualClock(),
            Custom = ctx => BackgroundRenewalFailsAsync(ctx),
            Expect = FaultExpect.Success(tokenRequests: 5, apiRequests: 0),
            // Regression: a failed background renewal was an unobserved task exception.
        });

        // ---- token endpoint: transport faults from the raw server -------------------------------------
        foreach (var (fault, label, transient, deadline) in new[]
        {
            (RawFault.ResetBeforeStatusLine, "connection reset before the status line", true, TimeSpan.FromSeconds(4)),
            (RawFault.TruncatedBody, "body truncated (10 of 100 bytes), then close", true, TimeSpan.FromSeconds(4)),
            (RawFault.ContentLengthTooLarge, "Content-Length 50 bytes larger than the body", true, TimeSpan.FromSeconds(4)),
            (RawFault.HeadersNeverFinish, "headers that never finish", true, timeoutDeadline),
        })
        {
            var f = fault;
            rows.Add(new FaultRow
            {
                Name = "raw token " + label,
                Endpoint = FaultEndpoint.Token,
                Act = FaultAct.Token,
                UsesRawServer = true,
                Arrange = ctx => ctx.UseRaw(f),
                // A timeout-driven fault fits 1 to 3 attempts in the deadline (scheduling); the others fail fast, 3 attempts.
                Expect = f == RawFault.HeadersNeverFinish
                    ? FaultExpect.Auth(0, transient, tokenRequests: 1, max: deadline, tokenRequestsMax: 3)
                    : FaultExpect.Auth(0, transient, tokenRequests: 3, max: deadline),
            });
        }

        rows.Add(new FaultRow
        {
            Name = "raw token response trickling 1 byte per second",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            UsesRawServer = true,
            Arrange = ctx => ctx.UseRaw(RawFault.Trickle).TrickleDelay = TimeSpan.FromSeconds(1),
            Expect = FaultExpect.Auth(0, transient: true, tokenRequests: 1, max: timeoutDeadline, tokenRequestsMax: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "raw token body trickling 1 byte per 100 ms after complete headers",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            UsesRawServer = true,
            Arrange = ctx =>
            {
                var raw = ctx.UseRaw(RawFault.Trickle);
                raw.TrickleDelay = TimeSpan.FromMilliseconds(100);
                raw.TrickleBodyOnly = true;
            },
            Expect = FaultExpect.Auth(0, transient: true, tokenRequests: 1, max: timeoutDeadline, tokenRequestsMax: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "raw token valid response (control)",
            Endpoint = FaultEndpoint.Token,
            Act = FaultAct.Token,
            UsesRawServer = true,
            Arrange = ctx => ctx.UseRaw(RawFault.ValidToken),
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 0),
        });

        // ---- Seller API ---------------------------------------------------------------------------------
        foreach (var status in new[] { 502, 503, 504, 429 })
        {
            var s = status;
            rows.Add(new FaultRow
            {
                Name = $"API {s} on GET, once: retried",
                Endpoint = FaultEndpoint.Api,
                Act = FaultAct.ApiGet,
                Arrange = Enqueue(FaultEndpoint.Api, 1, () => s == 502 ? FakeFault.Html(502) : FakeFault.Status(s, Goa(s == 429 ? "rate_limited" : "unavailable", false), GoaType)),
                Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2),
            });
        }

        rows.Add(new FaultRow
        {
            Name = "API 503 on every GET attempt",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 3, () => FakeFault.Status(503, Goa("unavailable", false), GoaType)),
            Expect = FaultExpect.Api(503, transient: true, tokenRequests: 1, apiRequests: 3),
        });

        rows.Add(new FaultRow
        {
            Name = "API 503 with Retry-After 1 s on GET, once",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(503, Goa("unavailable", false), GoaType, ("Retry-After", "1"))),
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2, min: TimeSpan.FromMilliseconds(950)),
        });

        rows.Add(new FaultRow
        {
            Name = "API 429 with Retry-After 3600 s on GET, capped by MaxRetryDelay 1 s",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = ctx =>
            {
                ctx.Options.MaxRetryDelay = TimeSpan.FromSeconds(1);
                ctx.Options.RequestTimeout = TimeSpan.FromSeconds(5);
                ctx.Server.EnqueueApiFault(FakeFault.Status(429, Goa("rate_limited", false), GoaType, ("Retry-After", "3600")));
            },
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2, min: TimeSpan.FromMilliseconds(950)),
        });

        rows.Add(new FaultRow
        {
            Name = "API 503 on POST: not retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiPost,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(503, Goa("unavailable", false), GoaType)),
            Expect = FaultExpect.Api(503, transient: true, tokenRequests: 1, apiRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "API goa temporary (500) on GET, once: retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(500, Goa("fault", true), GoaType)),
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API goa temporary (500) on POST: not retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiPost,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(500, Goa("fault", true), GoaType)),
            Expect = FaultExpect.Api(500, transient: true, tokenRequests: 1, apiRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "API goa non-temporary 500 on GET: not retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(500, Goa("fault", false), GoaType)),
            Expect = FaultExpect.Api(500, transient: true, tokenRequests: 1, apiRequests: 1),
        });

        rows.Add(new FaultRow
        {
            Name = "API 401 once on GET: renewed and retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(401, FakeTopiServer.UnauthorizedBody, "application/json")),
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API 401 once on POST: renewed and retried once",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.Custom,
            Arrange = Enqueue(FaultEndpoint.Api, 1, () => FakeFault.Status(401, FakeTopiServer.UnauthorizedBody, "application/json")),
            Custom = async ctx =>
            {
                var before = ctx.Server.ShippingMethods.Count;
                await ctx.PostCreateAsync("FT-REF-401");
                Assert.Equal(before + 1, ctx.Server.ShippingMethods.Count);
                Assert.Equal(2, ctx.Server.Requests.Count(r => r.Kind == FakeEndpointKind.Api && r.Method == "POST" && r.BodyText.Contains("FT-REF-401", StringComparison.Ordinal)));
            },
            Expect = FaultExpect.Success(tokenRequests: 2, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API 401 twice on GET: final",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 2, () => FakeFault.Status(401, FakeTopiServer.UnauthorizedBody, "application/json")),
            Expect = FaultExpect.Api(401, transient: false, tokenRequests: 2, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API connection dropped on GET, once (fresh connections): retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = ctx =>
            {
                ctx.UseFreshConnections();
                ctx.Server.EnqueueApiFault(FakeFault.Drop());
            },
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API connection dropped on GET, once (pooled connection)",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = Enqueue(FaultEndpoint.Api, 1, FakeFault.Drop),
            // .NET itself may resend a request whose reused connection died before any response byte; either way, 2 requests.
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 2),
        });

        rows.Add(new FaultRow
        {
            Name = "API connection dropped on every GET attempt (fresh connections)",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = ctx =>
            {
                ctx.UseFreshConnections();
                Enqueue(FaultEndpoint.Api, 3, FakeFault.Drop)(ctx);
            },
            Expect = new FaultExpect { Throws = typeof(TopiException), OrSubclass = true, Status = 0, Transient = true, TokenRequests = 1, ApiRequests = 3 },
            // Regression: TopiClient once let the HttpRequestException escape untyped.
        });

        rows.Add(new FaultRow
        {
            Name = "API connection dropped on POST (fresh connections): not retried",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiPost,
            Arrange = ctx =>
            {
                ctx.UseFreshConnections();
                ctx.Server.EnqueueApiFault(FakeFault.Drop());
            },
            Expect = new FaultExpect { Throws = typeof(TopiException), OrSubclass = true, Status = 0, Transient = true, TokenRequests = 1, ApiRequests = 1 },
            // Regression: TopiClient once let the HttpRequestException escape untyped.
        });

        rows.Add(new FaultRow
        {
            Name = "API latency past RequestTimeout on GET",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            Arrange = ctx => ctx.Server.ApiLatency = TimeSpan.FromSeconds(10),
            Expect = new FaultExpect { Throws = typeof(TopiException), Status = 0, Transient = true, TokenRequests = 1, ApiRequests = 1, MaxElapsed = timeoutDeadline },
        });

        // ---- Seller API: transport faults from the raw server (the fake server issues the token) ------------
        foreach (var (fault, label, apiRequests, deadline) in new[]
        {
            // Regression for all but the last: TopiClient once let the HttpRequestException (connection reset,
            // body cut short) escape untyped.
            (RawFault.ResetBeforeStatusLine, "connection reset before the status line: retried, then", 3, TimeSpan.FromSeconds(4)),
            (RawFault.TruncatedBody, "200 body truncated (10 of 100 bytes)", 1, TimeSpan.FromSeconds(4)),
            (RawFault.ContentLengthTooLarge, "200 Content-Length 50 bytes larger than the body", 1, TimeSpan.FromSeconds(4)),
            (RawFault.HeadersNeverFinish, "headers that never finish", 1, timeoutDeadline),
        })
        {
            var f = fault;
            rows.Add(new FaultRow
            {
                Name = "raw API GET " + label,
                Endpoint = FaultEndpoint.Api,
                Act = FaultAct.ApiGet,
                UsesRawServer = true,
                Arrange = ctx => ctx.UseRawApi(f),
                Expect = new FaultExpect { Throws = typeof(TopiException), OrSubclass = true, Status = 0, Transient = true, TokenRequests = 1, ApiRequests = apiRequests, MaxElapsed = deadline },
            });
        }

        rows.Add(new FaultRow
        {
            Name = "raw API GET response trickling 1 byte per second",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            UsesRawServer = true,
            Arrange = ctx => ctx.UseRawApi(RawFault.Trickle).TrickleDelay = TimeSpan.FromSeconds(1),
            Expect = new FaultExpect { Throws = typeof(TopiException), Status = 0, Transient = true, TokenRequests = 1, ApiRequests = 1, MaxElapsed = timeoutDeadline },
        });

        rows.Add(new FaultRow
        {
            Name = "raw API GET 200 body trickling 1 byte per second after complete headers",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            UsesRawServer = true,
            Arrange = ctx =>
            {
                var raw = ctx.UseRawApi(RawFault.Trickle);
                raw.TrickleDelay = TimeSpan.FromSeconds(1);
                raw.TrickleBodyOnly = true;
            },
            Expect = new FaultExpect { Throws = typeof(TopiException), Status = 0, Transient = true, TokenRequests = 1, ApiRequests = 1, MaxElapsed = timeoutDeadline },
            // Regression: with ResponseHeadersRead, HttpClient.Timeout stopped at the headers and the body was read
            // without a deadline, so a slow body hung the caller.
        });

        rows.Add(new FaultRow
        {
            Name = "raw API GET valid JSON response (control)",
            Endpoint = FaultEndpoint.Api,
            Act = FaultAct.ApiGet,
            UsesRawServer = true,
            Arrange = ctx => ctx.UseRawApi(RawFault.ValidToken),
            Expect = FaultExpect.Success(tokenRequests: 1, apiRequests: 1),
        });

        return rows;
    }

    /// <summary>
    /// The first attempt gets 503 with a 20 s Retry-After (delta or date). On the manual clock: the retry
    /// is scheduled 20 s out, nothing is sent at 19.9 s, and the retry goes out (and succeeds) at 20 s.
    /// </summary>
    private static async Task RetryAfterOnManualClockAsync(FaultRowContext ctx)
    {
        var time = ctx.Time!;
        var pending = ctx.Client.TokenProvider.GetTokenAsync().AsTask();
        var wait = TimeSpan.FromSeconds(20);
        await TestSupport.EventuallyAsync(() => time.CreatedTimer(wait) || pending.IsCompleted, "the 20 s Retry-After wait is scheduled");
        Assert.True(time.CreatedTimer(wait) && !pending.IsCompleted,
            $"no 20 s Retry-After wait was scheduled (token requests so far: {ctx.Server.TokenRequests}, renewal completed: {pending.IsCompleted})");
        Assert.Equal(1, ctx.Server.TokenRequests);

        time.Advance(wait - TimeSpan.FromMilliseconds(100));
        Assert.False(pending.IsCompleted);
        Assert.Equal(1, ctx.Server.TokenRequests);

        time.Advance(TimeSpan.FromMilliseconds(100));
        var token = await pending;
        Assert.True(token.HasScope("seller-shipping-method:read"));
    }

    /// <summary>
    /// Retry-After 20 s with a 10 s RequestTimeout: the renewal fails at once with the 503 (typed, transient,
    /// status kept), and no request reaches the token endpoint before the 20 s are over: callers in
    /// between fail fast. After 20 s a caller gets a token.
    /// </summary>
    private static async Task RetryAfterPastDeadlineAsync(FaultRowContext ctx)
    {
        var time = ctx.Time!;
        var first = await Assert.ThrowsAsync<TopiAuthenticationException>(async () => await ctx.Client.TokenProvider.GetTokenAsync());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, first.StatusCode);
        Assert.True(first.IsTransient);
        Assert.Equal("temporarily_unavailable", first.Error);
        Assert.Equal(1, ctx.Server.TokenRequests);

        time.Advance(TimeSpan.FromSeconds(19));
        var paused = await Assert.ThrowsAsync<TopiAuthenticationException>(async () => await ctx.Client.TokenProvider.GetTokenAsync());
        Assert.True(paused.IsTransient);
        Assert.Equal(1, ctx.Server.TokenRequests);

        time.Advance(TimeSpan.FromSeconds(1.5));
        var token = await ctx.Client.TokenProvider.GetTokenAsync();
        Assert.NotNull(token);
        Assert.Equal(2, ctx.Server.TokenRequests);
    }

    /// <summary>
    /// A 7200 s token reaches its refresh-ahead window; the background renewal fails on all 3 attempts.
    /// Callers keep getting the current token and see no error; a second renewal after the 1 s pause succeeds.
    /// The harness then checks that the failed renewal left no unobserved task exception.
    /// </summary>
    private static async Task BackgroundRenewalFailsAsync(FaultRowContext ctx)
    {
        var time = ctx.Time!;
        using var failures = new TopiRenewalFailureCounter();

        var current = await ctx.Client.TokenProvider.GetTokenAsync();
        Assert.Equal(1, ctx.Server.TokenRequests);

        // 7200 s token: usable 7140 s, refresh-ahead window the last 300 s, so renewal starts at 6840 s.
        time.Advance(TimeSpan.FromSeconds(6841));
        for (var i = 0; i < 3; i++)
        {
            ctx.Server.EnqueueTokenFault(FakeFault.Status(503, Oauth503, "application/json"));
        }

        Assert.Same(current, await ctx.Client.TokenProvider.GetTokenAsync()); // starts the background renewal
        await TestSupport.EventuallyAsync(() => failures.Count == 1, "the background renewal fails");
        Assert.Equal(4, ctx.Server.TokenRequests);
        Assert.Same(current, await ctx.Client.TokenProvider.GetTokenAsync()); // the failure is invisible

        time.Advance(TimeSpan.FromSeconds(1.1)); // past the outage pause: the next caller starts another renewal
        Assert.Same(current, await ctx.Client.TokenProvider.GetTokenAsync());
        await TestSupport.EventuallyAsync(() => ctx.Server.TokensIssued == 2, "the second background renewal succeeds");
        await TestSupport.EventuallyAsync(() => !ReferenceEquals(current, ctx.Client.TokenProvider.GetTokenAsync().AsTask().GetAwaiter().GetResult()), "the new token is current");
        Assert.Equal(5, ctx.Server.TokenRequests);
    }
}
