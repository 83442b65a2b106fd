using System.Buffers;
using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Topi.Testing;

/// <summary>
/// An in-process fake of topi's OAuth2 token endpoint and of the Seller API's shipping-method
/// operations, on <c>http://127.0.0.1:{free port}/</c>. It follows topi's authentication guide
/// byte for byte (including the trailing comma of its <c>invalid_client</c> body) and the
/// Seller API's OpenAPI description, and can be told to misbehave in scripted or random ways.
/// Every request is handled concurrently. All members are thread-safe.
/// </summary>
public sealed class FakeTopiServer : IDisposable, IAsyncDisposable
{
    /// <summary>The <c>scope</c> of the guide's token response, byte for byte (seller-metrics:read appears twice there).</summary>
    public const string GuideScope = "seller-catalog:read seller-catalog:edit seller-metrics:read seller-offer:read seller-offer:edit seller-order:read seller-order:edit seller-shipping-method:edit seller-shipping-method:read seller-shipment:edit seller-metrics:read user-info:read";

    /// <summary>The guide's 401 body of the token endpoint, verbatim: LF line ends, trailing comma, no final newline.</summary>
    public const string InvalidClientBody = "{\n\"error\": \"invalid_client\",\n\"error_description\": \"Client authentication failed\",\n}";

    /// <summary>The Seller API's 401 body: a plain JSON string (the OpenAPI gives only <c>type: string</c>), sent as application/json.</summary>
    public const string UnauthorizedBody = "\"Unauthorized\"";

    /// <summary>The content type of goa error bodies.</summary>
    public const string GoaErrorContentType = "application/vnd.goa.error";

    /// <summary>The sandbox's documented reference that makes <c>POST /v1/shipping-method/method</c> answer 422.</summary>
    public const string BridgesReference = "Bridges";

    /// <summary>The token endpoint's path.</summary>
    public const string TokenPath = "/oauth2/token";

    /// <summary>The path of the paginated shipping method list (GET, <c>?page=N</c>, zero-based).</summary>
    public const string ShippingMethodsPath = "/v1/shipping-method";

    /// <summary>The path that creates a shipping method (POST).</summary>
    public const string CreateShippingMethodPath = "/v1/shipping-method/method";

    /// <summary>The response header telling why the fake answered 401 (for test diagnostics only).</summary>
    public const string ReasonHeader = "X-Fake-Topi-Reason";

    private static readonly string JwtHeader = Base64Url.EncodeToString("{\"alg\":\"HS256\",\"typ\":\"JWT\"}"u8);
    private static readonly string[] CarrierNames = ["United Parcel Service", "DHL Paket", "DPD Classic", "Hermes Standard", "GLS Business Parcel", "Deutsche Post Warenpost", "FedEx International Economy"];

    private readonly FakeHttpHost _host;
    private readonly byte[] _signingKey = RandomNumberGenerator.GetBytes(32);
    private readonly string _issuer;
    private readonly ConcurrentQueue<FakeFault> _tokenFaults = new();
    private readonly ConcurrentQueue<FakeFault> _apiFaults = new();
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly int _maxRecordedRequests;
    private readonly object _methodsLock = new();
    private readonly List<FakeShippingMethod> _methods = new();
    private readonly object _randomLock = new();
    private Random _random;

    // runtime knobs
    private volatile string _clientId;
    private volatile string _clientSecret;
    private volatile string _environmentName;
    private volatile string _scope;
    private volatile string? _expiresInJson;
    private volatile string? _tokenType;
    private volatile bool _omitExpiresIn;
    private volatile bool _rejectDuplicateReferences;
    private volatile int _pageSize;
    private volatile Func<Task>? _onTokenRequest;
    private long _tokenLifetimeTicks;
    private long _tokenLatencyTicks;
    private long _apiLatencyTicks;
    private double _tokenFailureRate;
    private double _apiUnauthorizedRate;

    // counters
    private long _requestSequence;
    private long _tokenSequence;
    private long _revokedThroughSequence;
    private int _tokenRequests;
    private int _tokensIssued;
    private int _apiRequests;
    private int _expiredTokenRequests;
    private int _unauthorizedApiRequests;
    private int _tokenRequestsInFlight;
    private int _maxConcurrentTokenRequests;

    private FakeTopiServer(FakeTopiServerOptions options)
    {
        TimeProvider = options.TimeProvider;
        _clientId = options.ClientId;
        _clientSecret = options.ClientSecret;
        _environmentName = options.EnvironmentName;
        _scope = options.Scope;
        _pageSize = options.PageSize;
        _tokenLifetimeTicks = options.TokenLifetime.Ticks;
        _maxRecordedRequests = options.MaxRecordedRequests;
        _random = options.RandomSeed is int seed ? new Random(seed) : new Random();
        ResetShippingMethods(options.ShippingMethodCount);

        // Last: from here on requests can arrive.
        _host = FakeHttpHost.Start(HandleAsync);
        BaseAddress = new Uri("http://127.0.0.1:" + _host.Port.ToString(CultureInfo.InvariantCulture) + "/");
        TokenEndpoint = new Uri(BaseAddress, "oauth2/token");
        _issuer = BaseAddress.ToString();
    }

    /// <summary>The server's root, e.g. <c>http://127.0.0.1:5123/</c>: the Seller API base address.</summary>
    public Uri BaseAddress { get; }

    /// <summary>The token endpoint: <see cref="BaseAddress"/> + <c>oauth2/token</c>.</summary>
    public Uri TokenEndpoint { get; }

    /// <summary>The server's clock for token <c>iat</c>/<c>exp</c> and expiry checks.</summary>
    public TimeProvider TimeProvider { get; }

    /// <summary>The client id the token endpoint accepts.</summary>
    public string ClientId
    {
        get => _clientId;
        set => _clientId = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>The client secret the token endpoint accepts.</summary>
    public string ClientSecret
    {
        get => _clientSecret;
        set => _clientSecret = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>The environment put in new tokens and required of presented ones (changing it invalidates earlier tokens).</summary>
    public string EnvironmentName
    {
        get => _environmentName;
        set => _environmentName = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>The <c>scope</c> answered with new tokens.</summary>
    public string Scope
    {
        get => _scope;
        set => _scope = value ?? throw new ArgumentNullException(nameof(value));
    }

    /// <summary>Lifetime of new tokens; <c>expires_in</c> is its whole seconds (unless overridden by <see cref="ExpiresInJson"/>).</summary>
    public TimeSpan TokenLifetime
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _tokenLifetimeTicks));
        set => Interlocked.Exchange(ref _tokenLifetimeTicks, value.Ticks);
    }

    /// <summary>
    /// Raw JSON put as the value of <c>expires_in</c> instead of the lifetime (e.g. <c>"\"3600\""</c>,
    /// <c>"1.5"</c>, <c>"-5"</c>, <c>"1e12"</c>, <c>"null"</c>); null: the real lifetime. The token's real
    /// validity stays <see cref="TokenLifetime"/>.
    /// </summary>
    public string? ExpiresInJson
    {
        get => _expiresInJson;
        set => _expiresInJson = value;
    }

    /// <summary>Leave <c>expires_in</c> out of the token response altogether.</summary>
    public bool OmitExpiresIn
    {
        get => _omitExpiresIn;
        set => _omitExpiresIn = value;
    }

    /// <summary>The <c>token_type</c> answered (e.g. <c>bearer</c>, <c>mac</c>); null: <c>Bearer</c>.</summary>
    public string? TokenType
    {
        get => _tokenType;
        set => _tokenType = value;
    }

    /// <summary>Real-time delay applied to every token request before it is answered.</summary>
    public TimeSpan TokenLatency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _tokenLatencyTicks));
        set => Interlocked.Exchange(ref _tokenLatencyTicks, value.Ticks);
    }

    /// <summary>Real-time delay applied to every Seller API request before it is answered.</summary>
    public TimeSpan ApiLatency
    {
        get => TimeSpan.FromTicks(Interlocked.Read(ref _apiLatencyTicks));
        set => Interlocked.Exchange(ref _apiLatencyTicks, value.Ticks);
    }

    /// <summary>Probability (0..1) that a token request is answered 503 instead of being processed.</summary>
    public double TokenFailureRate
    {
        get => Volatile.Read(ref _tokenFailureRate);
        set => Volatile.Write(ref _tokenFailureRate, CheckRate(value));
    }

    /// <summary>Probability (0..1) that a Seller API request with a valid token is answered 401 anyway.</summary>
    public double ApiUnauthorizedRate
    {
        get => Volatile.Read(ref _apiUnauthorizedRate);
        set => Volatile.Write(ref _apiUnauthorizedRate, CheckRate(value));
    }

    /// <summary>Shipping methods per page of <c>GET /v1/shipping-method</c>.</summary>
    public int PageSize
    {
        get => _pageSize;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            _pageSize = value;
        }
    }

    /// <summary>Answer 422 to a create whose reference is already held (besides the documented <c>Bridges</c>). Default false.</summary>
    public bool RejectDuplicateReferences
    {
        get => _rejectDuplicateReferences;
        set => _rejectDuplicateReferences = value;
    }

    /// <summary>Awaited before answering every token request (after <see cref="TokenLatency"/>, before any queued fault takes effect).</summary>
    public Func<Task>? OnTokenRequest
    {
        get => _onTokenRequest;
        set => _onTokenRequest = value;
    }

    /// <summary>Requests to the token endpoint, whatever their method or outcome (faults included).</summary>
    public int TokenRequests => Volatile.Read(ref _tokenRequests);

    /// <summary>Tokens handed out by the token endpoint (200 answers with a real token).</summary>
    public int TokensIssued => Volatile.Read(ref _tokensIssued);

    /// <summary>Requests to anything but the token endpoint, whatever their outcome.</summary>
    public int ApiRequests => Volatile.Read(ref _apiRequests);

    /// <summary>Seller API requests rejected because their (otherwise valid) token had expired.</summary>
    public int ExpiredTokenRequests => Volatile.Read(ref _expiredTokenRequests);

    /// <summary>Seller API requests answered 401 (missing/invalid/expired/revoked token, or <see cref="ApiUnauthorizedRate"/>).</summary>
    public int UnauthorizedApiRequests => Volatile.Read(ref _unauthorizedApiRequests);

    /// <summary>Token requests being handled right now.</summary>
    public int TokenRequestsInFlight => Volatile.Read(ref _tokenRequestsInFlight);

    /// <summary>The most token requests that were ever being handled at once (since start or <see cref="ResetCounters"/>).</summary>
    public int MaxConcurrentTokenRequests => Volatile.Read(ref _maxConcurrentTokenRequests);

    /// <summary>Token faults queued and not yet consumed.</summary>
    public int PendingTokenFaults => _tokenFaults.Count;

    /// <summary>Seller API faults queued and not yet consumed.</summary>
    public int PendingApiFaults => _apiFaults.Count;

    /// <summary>A snapshot of the received requests, oldest first (at most <see cref="FakeTopiServerOptions.MaxRecordedRequests"/>).</summary>
    public IReadOnlyList<RecordedRequest> Requests => _requests.ToArray();

    /// <summary>A snapshot of the shipping methods held, in page order.</summary>
    public IReadOnlyList<FakeShippingMethod> ShippingMethods
    {
        get
        {
            lock (_methodsLock)
            {
                return _methods.ToArray();
            }
        }
    }

    /// <summary>Starts a server on a free loopback port.</summary>
    public static FakeTopiServer Start(FakeTopiServerOptions? options = null)
    {
        options ??= new FakeTopiServerOptions();
        ArgumentNullException.ThrowIfNull(options.ClientId);
        ArgumentNullException.ThrowIfNull(options.ClientSecret);
        ArgumentNullException.ThrowIfNull(options.EnvironmentName);
        ArgumentNullException.ThrowIfNull(options.Scope);
        ArgumentNullException.ThrowIfNull(options.TimeProvider);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PageSize, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(options.ShippingMethodCount);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxRecordedRequests, 0);

        return new FakeTopiServer(options);
    }

    /// <summary>Queues a fault for the next token request (faults are consumed in order).</summary>
    public void EnqueueTokenFault(FakeFault fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        _tokenFaults.Enqueue(fault);
    }

    /// <summary>Queues a fault for the next Seller API request (faults are consumed in order).</summary>
    public void EnqueueApiFault(FakeFault fault)
    {
        ArgumentNullException.ThrowIfNull(fault);
        _apiFaults.Enqueue(fault);
    }

    /// <summary>Drops every queued fault.</summary>
    public void ClearFaults()
    {
        _tokenFaults.Clear();
        _apiFaults.Clear();
    }

    /// <summary>Invalidates every token issued so far (they get 401); later tokens are valid.</summary>
    public void RevokeAllTokens()
    {
        var current = Interlocked.Read(ref _tokenSequence);
        long seen;
        do
        {
            seen = Interlocked.Read(ref _revokedThroughSequence);
            if (seen >= current)
            {
                return;
            }
        }
        while (Interlocked.CompareExchange(ref _revokedThroughSequence, current, seen) != seen);
    }

    /// <summary>
    /// Mints a token as the token endpoint would (same key, environment and clock), without a request
    /// and without counting it in <see cref="TokensIssued"/>. <paramref name="lifetime"/> defaults to
    /// <see cref="TokenLifetime"/>; a negative one gives an already expired token.
    /// </summary>
    public string IssueToken(TimeSpan? lifetime = null) => MintToken(WholeSeconds(lifetime ?? TokenLifetime));

    /// <summary>Reseeds the random failures.</summary>
    public void SeedRandom(int seed)
    {
        lock (_randomLock)
        {
            _random = new Random(seed);
        }
    }

    /// <summary>Sets every counter (and <see cref="MaxConcurrentTokenRequests"/>) back to zero.</summary>
    public void ResetCounters()
    {
        Interlocked.Exchange(ref _tokenRequests, 0);
        Interlocked.Exchange(ref _tokensIssued, 0);
        Interlocked.Exchange(ref _apiRequests, 0);
        Interlocked.Exchange(ref _expiredTokenRequests, 0);
        Interlocked.Exchange(ref _unauthorizedApiRequests, 0);
        Interlocked.Exchange(ref _maxConcurrentTokenRequests, Volatile.Read(ref _tokenRequestsInFlight));
    }

    /// <summary>Forgets the recorded requests.</summary>
    public void ClearRequests() => _requests.Clear();

    /// <summary>Replaces the shipping methods by <paramref name="count"/> seeded ones (ids <c>00000000-0000-4000-8000-00000000000N</c>, references <c>SM-00N</c>).</summary>
    public void ResetShippingMethods(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        var seeded = new List<FakeShippingMethod>(count);
        for (var i = 1; i <= count; i++)
        {
            seeded.Add(new FakeShippingMethod(
                "00000000-0000-4000-8000-" + i.ToString("D12", CultureInfo.InvariantCulture),
                "SM-" + i.ToString("D3", CultureInfo.InvariantCulture),
                CarrierNames[(i - 1) % CarrierNames.Length],
                i % 3 == 0,
                true));
        }

        lock (_methodsLock)
        {
            _methods.Clear();
            _methods.AddRange(seeded);
        }
    }

    /// <summary>Appends a shipping method (as a successful create would).</summary>
    public void AddShippingMethod(FakeShippingMethod method)
    {
        ArgumentNullException.ThrowIfNull(method);
        lock (_methodsLock)
        {
            _methods.Add(method);
        }
    }

    /// <summary>Stops the listener and waits (bounded) for in-flight requests; gates, delays and hooks are released (their requests are dropped).</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    /// <inheritdoc cref="Dispose"/>
    public ValueTask DisposeAsync() => _host.DisposeAsync();

    /// <inheritdoc />
    public override string ToString() => $"FakeTopiServer {BaseAddress} ({EnvironmentName})";

    private async Task HandleAsync(FakeHttpExchange exchange, CancellationToken ct)
    {
        try
        {
            await HandleCoreAsync(exchange, ct).ConfigureAwait(false);
        }
        catch (Exception)
        {
            exchange.Drop();
        }
    }

    private async Task HandleCoreAsync(FakeHttpExchange response, CancellationToken ct)
    {
        var request = response.Request;
        var rawTarget = request.Target;
        var queryStart = rawTarget.IndexOf('?');
        var path = queryStart < 0 ? rawTarget : rawTarget[..queryStart];
        var query = queryStart < 0 ? "" : rawTarget[(queryStart + 1)..];
        var kind = path == TokenPath ? FakeEndpointKind.Token : FakeEndpointKind.Api;
        var body = request.Body;
        Record(kind, request, rawTarget, body);

        if (kind == FakeEndpointKind.Token)
        {
            Interlocked.Increment(ref _tokenRequests);
            var inFlight = Interlocked.Increment(ref _tokenRequestsInFlight);
            UpdateMax(ref _maxConcurrentTokenRequests, inFlight);
            try
            {
                _tokenFaults.TryDequeue(out var fault);
                await DelayAsync(TokenLatency, ct).ConfigureAwait(false);
                var hook = OnTokenRequest;
                if (hook is not null)
                {
                    Task hookTask;
                    try
                    {
                        hookTask = hook() ?? Task.CompletedTask;
                    }
                    catch (Exception)
                    {
                        hookTask = Task.CompletedTask; // a throwing hook does not stop the request
                    }

                    await AwaitQuietly(hookTask, ct).ConfigureAwait(false);
                }

                if (await ApplyFaultAsync(fault, response, ct).ConfigureAwait(false))
                {
                    return;
                }

                if (Roll(TokenFailureRate))
                {
                    await SendOAuthErrorAsync(response, 503, "temporarily_unavailable", "The authorization server is currently unable to handle the request due to a temporary overloading or maintenance of the server.", ct).ConfigureAwait(false);
                    return;
                }

                await HandleTokenAsync(request, response, body, ct).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _tokenRequestsInFlight);
            }
        }
        else
        {
            Interlocked.Increment(ref _apiRequests);
            _apiFaults.TryDequeue(out var fault);
            await DelayAsync(ApiLatency, ct).ConfigureAwait(false);
            if (await ApplyFaultAsync(fault, response, ct).ConfigureAwait(false))
            {
                return;
            }

            await HandleApiAsync(request, response, path, query, body, ct).ConfigureAwait(false);
        }
    }

    // ---- faults ----------------------------------------------------------------------------

    /// <returns>true when the fault answered (or dropped) the request; false: answer normally.</returns>
    private static async Task<bool> ApplyFaultAsync(FakeFault? fault, FakeHttpExchange response, CancellationToken ct)
    {
        if (fault is null)
        {
            return false;
        }

        switch (fault.Kind)
        {
            case FakeFaultKind.Delay:
                await DelayAsync(fault.Duration, ct).ConfigureAwait(false);
                return false;

            case FakeFaultKind.Gate:
                await AwaitQuietly(fault.GateTask!, ct).ConfigureAwait(false);
                return false;

            case FakeFaultKind.Drop:
                response.Drop();
                return true;

            case FakeFaultKind.Oversized:
                await response.SendPaddingAsync(fault.Size, ct).ConfigureAwait(false);
                return true;

            default:
                await SendAsync(response, fault.StatusCode, fault.ContentType, Encoding.UTF8.GetBytes(fault.Body), ct, fault.Headers).ConfigureAwait(false);
                return true;
        }
    }

    // ---- token endpoint --------------------------------------------------------------------

    private async Task HandleTokenAsync(FakeHttpRequest request, FakeHttpExchange response, byte[] body, CancellationToken ct)
    {
        if (request.Method != "POST")
        {
            await SendOAuthErrorAsync(response, 405, "invalid_request", "HTTP method is '" + request.Method + "', expected 'POST'.", ct, ("Allow", "POST")).ConfigureAwait(false);
            return;
        }

        if (!IsMediaType(request.Header("Content-Type"), "application/x-www-form-urlencoded"))
        {
            await SendOAuthErrorAsync(response, 400, "invalid_request", "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed. Content-Type must be application/x-www-form-urlencoded.", ct).ConfigureAwait(false);
            return;
        }

        if (!TryParseForm(body, out var form))
        {
            await SendOAuthErrorAsync(response, 400, "invalid_request", "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed. Unable to parse the form body.", ct).ConfigureAwait(false);
            return;
        }

        var grantType = First(form, "grant_type");
        if (string.IsNullOrEmpty(grantType))
        {
            await SendOAuthErrorAsync(response, 400, "invalid_request", "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed. Request parameter 'grant_type' is missing.", ct).ConfigureAwait(false);
            return;
        }

        if (!IsAuthenticClient(request.Header("Authorization")))
        {
            await SendAsync(response, 401, "application/json", Encoding.UTF8.GetBytes(InvalidClientBody), ct).ConfigureAwait(false);
            return;
        }

        if (grantType != "client_credentials")
        {
            await SendOAuthErrorAsync(response, 400, "unsupported_grant_type", "The authorization grant type is not supported by the authorization server.", ct).ConfigureAwait(false);
            return;
        }

        var scope = First(form, "scope");
        if (!string.IsNullOrEmpty(scope))
        {
            foreach (var s in scope.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                if (s != "client")
                {
                    await SendOAuthErrorAsync(response, 400, "invalid_scope", "The requested scope is invalid, unknown, or malformed. The OAuth 2.0 Client is not allowed to request scope '" + s + "'.", ct).ConfigureAwait(false);
                    return;
                }
            }
        }

        var lifetimeSeconds = WholeSeconds(TokenLifetime);
        var token = MintToken(lifetimeSeconds);
        Interlocked.Increment(ref _tokensIssued);

        var json = new StringBuilder(512);
        json.Append("{\"access_token\":\"").Append(JsonEncodedText.Encode(token).ToString()).Append('"');
        if (!OmitExpiresIn)
        {
            json.Append(",\"expires_in\":").Append(ExpiresInJson ?? lifetimeSeconds.ToString(CultureInfo.InvariantCulture));
        }

        json.Append(",\"scope\":\"").Append(JsonEncodedText.Encode(Scope).ToString()).Append('"');
        json.Append(",\"token_type\":\"").Append(JsonEncodedText.Encode(TokenType ?? "Bearer").ToString()).Append("\"}");
        await SendAsync(response, 200, "application/json;charset=UTF-8", Encoding.UTF8.GetBytes(json.ToString()), ct, [("Cache-Control", "no-store"), ("Pragma", "no-cache")]).ConfigureAwait(false);
    }

    private bool IsAuthenticClient(string? authorization)
    {
        if (authorization is null)
        {
            return false;
        }

        authorization = authorization.Trim();
        if (authorization.Length < 6 || !authorization.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        byte[] decoded;
        try
        {
            decoded = Convert.FromBase64String(authorization[6..].Trim());
        }
        catch (FormatException)
        {
            return false;
        }

        var colon = Array.IndexOf(decoded, (byte)':');
        if (colon < 0)
        {
            return false;
        }

        // RFC 6749 §2.3.1 (and fosite): id and secret are form-urlencoded before Basic encoding.
        if (!TryFormDecode(decoded.AsSpan(0, colon), out var id) || !TryFormDecode(decoded.AsSpan(colon + 1), out var secret))
        {
            return false;
        }

        var idOk = CryptographicOperations.FixedTimeEquals(id, Encoding.UTF8.GetBytes(ClientId));
        var secretOk = CryptographicOperations.FixedTimeEquals(secret, Encoding.UTF8.GetBytes(ClientSecret));
        return idOk & secretOk;
    }

    private string MintToken(long lifetimeSeconds)
    {
        var sequence = Interlocked.Increment(ref _tokenSequence);
        var now = TimeProvider.GetUtcNow();
        var iat = now.ToUnixTimeSeconds();
        if (now.UtcTicks % TimeSpan.TicksPerSecond != 0)
        {
            iat++; // round the issue instant up so a token never expires before expires_in has elapsed
        }

        long exp;
        try
        {
            exp = checked(iat + lifetimeSeconds);
        }
        catch (OverflowException)
        {
            exp = lifetimeSeconds > 0 ? long.MaxValue : long.MinValue;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("iss", _issuer);
            writer.WriteString("sub", ClientId);
            writer.WriteString("env", EnvironmentName);
            writer.WriteNumber("iat", iat);
            writer.WriteNumber("exp", exp);
            writer.WriteString("jti", Guid.NewGuid().ToString("N"));
            writer.WriteNumber("seq", sequence);
            writer.WriteString("scp", Scope);
            writer.WriteEndObject();
        }

        var signingInput = JwtHeader + "." + Base64Url.EncodeToString(buffer.WrittenSpan);
        var signature = HMACSHA256.HashData(_signingKey, Encoding.ASCII.GetBytes(signingInput));
        return signingInput + "." + Base64Url.EncodeToString(signature);
    }

    // ---- Seller API ------------------------------------------------------------------------

    private enum TokenCheck
    {
        Valid,
        Missing,
        Malformed,
        BadSignature,
        WrongEnvironment,
        Revoked,
        Expired,
    }

    private async Task HandleApiAsync(FakeHttpRequest request, FakeHttpExchange response, string path, string query, byte[] body, CancellationToken ct)
    {
        string allowed;
        if (path == ShippingMethodsPath)
        {
            allowed = "GET";
        }
        else if (path == CreateShippingMethodPath)
        {
            allowed = "POST";
        }
        else
        {
            await SendGoaErrorAsync(response, 404, "NotFound", "no route for " + request.Method + " " + path, ct).ConfigureAwait(false);
            return;
        }

        if (request.Method != allowed)
        {
            await SendGoaErrorAsync(response, 405, "MethodNotAllowed", "method " + request.Method + " is not allowed on " + path, ct, ("Allow", allowed)).ConfigureAwait(false);
            return;
        }

        var check = CheckBearer(request.Header("Authorization"));
        if (check != TokenCheck.Valid)
        {
            Interlocked.Increment(ref _unauthorizedApiRequests);
            if (check == TokenCheck.Expired)
            {
                Interlocked.Increment(ref _expiredTokenRequests);
            }

            await SendUnauthorizedAsync(response, check.ToString(), ct).ConfigureAwait(false);
            return;
        }

        if (Roll(ApiUnauthorizedRate))
        {
            Interlocked.Increment(ref _unauthorizedApiRequests);
            await SendUnauthorizedAsync(response, "Random", ct).ConfigureAwait(false);
            return;
        }

        if (allowed == "GET")
        {
            await ListShippingMethodsAsync(response, query, ct).ConfigureAwait(false);
        }
        else
        {
            await CreateShippingMethodAsync(response, body, ct).ConfigureAwait(false);
        }
    }

    private TokenCheck CheckBearer(string? authorization)
    {
        if (authorization is null)
        {
            return TokenCheck.Missing;
        }

        authorization = authorization.Trim();
        if (!authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return TokenCheck.Missing;
        }

        var token = authorization[7..].Trim();
        var parts = token.Split('.');
        if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0 || parts[2].Length == 0)
        {
            return TokenCheck.Malformed;
        }

        byte[] signature;
        byte[] payload;
        try
        {
            signature = Base64Url.DecodeFromChars(parts[2]);
            payload = Base64Url.DecodeFromChars(parts[1]);
        }
        catch (FormatException)
        {
            return TokenCheck.Malformed;
        }

        var expected = HMACSHA256.HashData(_signingKey, Encoding.ASCII.GetBytes(parts[0] + "." + parts[1]));
        if (!CryptographicOperations.FixedTimeEquals(expected, signature))
        {
            return TokenCheck.BadSignature;
        }

        try
        {
            using var doc = JsonDocument.Parse(payload);
            var root = doc.RootElement;
            if (!root.TryGetProperty("env", out var env) || env.ValueKind != JsonValueKind.String || env.GetString() != EnvironmentName)
            {
                return TokenCheck.WrongEnvironment;
            }

            if (!root.TryGetProperty("seq", out var seq) || !seq.TryGetInt64(out var sequence) || !root.TryGetProperty("exp", out var expElement) || !expElement.TryGetInt64(out var exp))
            {
                return TokenCheck.Malformed;
            }

            if (sequence <= Interlocked.Read(ref _revokedThroughSequence))
            {
                return TokenCheck.Revoked;
            }

            return TimeProvider.GetUtcNow().ToUnixTimeSeconds() >= exp ? TokenCheck.Expired : TokenCheck.Valid;
        }
        catch (JsonException)
        {
            return TokenCheck.Malformed;
        }
    }

    private async Task ListShippingMethodsAsync(FakeHttpExchange response, string query, CancellationToken ct)
    {
        long page = 0;
        var rawPage = QueryValue(query, "page");
        if (!string.IsNullOrEmpty(rawPage))
        {
            if (!long.TryParse(rawPage, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out page))
            {
                await SendGoaErrorAsync(response, 400, "invalid_field_type", "invalid value \"" + rawPage + "\" for \"page\", must be a integer", ct).ConfigureAwait(false);
                return;
            }

            if (page < 0)
            {
                await SendGoaErrorAsync(response, 400, "invalid_range", "\"page\" must be greater or equal than 0 but got value " + page.ToString(CultureInfo.InvariantCulture), ct).ConfigureAwait(false);
                return;
            }
        }

        var pageSize = PageSize;
        FakeShippingMethod[] items;
        bool hasMore;
        lock (_methodsLock)
        {
            var start = page * pageSize;
            if (start >= _methods.Count)
            {
                items = [];
                hasMore = false;
            }
            else
            {
                var count = (int)Math.Min(pageSize, _methods.Count - start);
                items = _methods.GetRange((int)start, count).ToArray();
                hasMore = start + count < _methods.Count;
            }
        }

        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("data");
            foreach (var item in items)
            {
                WriteShippingMethod(writer, item);
            }

            writer.WriteEndArray();
            writer.WriteStartObject("pagination");
            writer.WriteBoolean("has_more", hasMore);
            writer.WriteNumber("page", page);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        await SendAsync(response, 200, "application/json", buffer.WrittenMemory, ct).ConfigureAwait(false);
    }

    private async Task CreateShippingMethodAsync(FakeHttpExchange response, byte[] body, CancellationToken ct)
    {
        string reference;
        string? name = null;
        var inStorePickup = false;
        try
        {
            using var doc = JsonDocument.Parse(body);
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                await SendGoaErrorAsync(response, 400, "decode_payload", "request body must be a JSON object", ct).ConfigureAwait(false);
                return;
            }

            if (!root.TryGetProperty("seller_shipping_method_reference", out var r) || r.ValueKind == JsonValueKind.Null)
            {
                await SendGoaErrorAsync(response, 400, "missing_field", "\"seller_shipping_method_reference\" is missing from body", ct).ConfigureAwait(false);
                return;
            }

            if (r.ValueKind != JsonValueKind.String)
            {
                await SendGoaErrorAsync(response, 400, "invalid_field_type", "invalid value for \"seller_shipping_method_reference\", must be a string", ct).ConfigureAwait(false);
                return;
            }

            reference = r.GetString()!;
            if (root.TryGetProperty("name", out var n) && n.ValueKind != JsonValueKind.Null)
            {
                if (n.ValueKind != JsonValueKind.String)
                {
                    await SendGoaErrorAsync(response, 400, "invalid_field_type", "invalid value for \"name\", must be a string", ct).ConfigureAwait(false);
                    return;
                }

                name = n.GetString();
            }

            if (root.TryGetProperty("is_in_store_pickup", out var p) && p.ValueKind != JsonValueKind.Null)
            {
                if (p.ValueKind is not (JsonValueKind.True or JsonValueKind.False))
                {
                    await SendGoaErrorAsync(response, 400, "invalid_field_type", "invalid value for \"is_in_store_pickup\", must be a boolean", ct).ConfigureAwait(false);
                    return;
                }

                inStorePickup = p.GetBoolean();
            }
        }
        catch (JsonException e)
        {
            await SendGoaErrorAsync(response, 400, "decode_payload", "failed to decode request body: " + e.Message, ct).ConfigureAwait(false);
            return;
        }

        FakeShippingMethod? created = null;
        lock (_methodsLock)
        {
            var duplicate = reference == BridgesReference
                || (RejectDuplicateReferences && _methods.Exists(m => m.SellerShippingMethodReference == reference));
            if (!duplicate)
            {
                created = new FakeShippingMethod(Guid.NewGuid().ToString("D"), reference, name, inStorePickup, true);
                _methods.Add(created);
            }
        }

        if (created is null)
        {
            await SendGoaErrorAsync(response, 422, "Unprocessable", "There is already a shipping method with reference " + reference, ct).ConfigureAwait(false);
            return;
        }

        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteShippingMethod(writer, created);
        }

        await SendAsync(response, 201, "application/json", buffer.WrittenMemory, ct).ConfigureAwait(false);
    }

    private static void WriteShippingMethod(Utf8JsonWriter writer, FakeShippingMethod method)
    {
        writer.WriteStartObject();
        writer.WriteString("id", method.Id);
        writer.WriteBoolean("is_in_store_pickup", method.IsInStorePickup);
        if (method.Name is not null)
        {
            writer.WriteString("name", method.Name);
        }

        writer.WriteString("seller_shipping_method_reference", method.SellerShippingMethodReference);
        writer.WriteBoolean("supported", method.Supported);
        writer.WriteEndObject();
    }

    // ---- responses -------------------------------------------------------------------------

    private static Task SendUnauthorizedAsync(FakeHttpExchange response, string reason, CancellationToken ct)
        => SendAsync(response, 401, "application/json", Encoding.UTF8.GetBytes(UnauthorizedBody), ct, [(ReasonHeader, reason)]);

    private static Task SendOAuthErrorAsync(FakeHttpExchange response, int status, string error, string description, CancellationToken ct, params (string Name, string Value)[] headers)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("error", error);
            writer.WriteString("error_description", description);
            writer.WriteEndObject();
        }

        return SendAsync(response, status, "application/json;charset=UTF-8", buffer.WrittenMemory, ct, headers);
    }

    private static Task SendGoaErrorAsync(FakeHttpExchange response, int status, string name, string message, CancellationToken ct, params (string Name, string Value)[] headers)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("name", name);
            writer.WriteString("id", Guid.NewGuid().ToString("N")[..8]);
            writer.WriteString("message", message);
            writer.WriteBoolean("temporary", false);
            writer.WriteBoolean("timeout", false);
            writer.WriteBoolean("fault", false);
            writer.WriteEndObject();
        }

        return SendAsync(response, status, GoaErrorContentType, buffer.WrittenMemory, ct, headers);
    }

    private static Task SendAsync(FakeHttpExchange response, int status, string? contentType, ReadOnlyMemory<byte> body, CancellationToken ct, IReadOnlyList<(string Name, string Value)>? headers = null)
        => response.SendAsync(status, contentType, body, headers, ct);

    // ---- helpers ---------------------------------------------------------------------------

    private void Record(FakeEndpointKind kind, FakeHttpRequest request, string rawTarget, byte[] body)
    {
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var header in request.Headers)
        {
            headers[header.Key] = headers.TryGetValue(header.Key, out var earlier) ? earlier + ", " + header.Value : header.Value;
        }

        var recorded = new RecordedRequest(Interlocked.Increment(ref _requestSequence), kind, request.Method, rawTarget, headers, body, DateTimeOffset.UtcNow);
        if (_maxRecordedRequests == 0)
        {
            return;
        }

        _requests.Enqueue(recorded);
        while (_requests.Count > _maxRecordedRequests && _requests.TryDequeue(out _))
        {
        }
    }

    private static async Task DelayAsync(TimeSpan delay, CancellationToken ct)
    {
        if (delay > TimeSpan.Zero || delay == Timeout.InfiniteTimeSpan)
        {
            await Task.Delay(delay, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Waits for a test-supplied task; its outcome does not matter, only server shutdown stops the wait.</summary>
    private static async Task AwaitQuietly(Task task, CancellationToken ct)
    {
        try
        {
            await task.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception) when (!ct.IsCancellationRequested)
        {
            // a faulted or cancelled gate still opens
        }
    }

    private bool Roll(double rate)
    {
        if (rate <= 0)
        {
            return false;
        }

        if (rate >= 1)
        {
            return true;
        }

        lock (_randomLock)
        {
            return _random.NextDouble() < rate;
        }
    }

    private static double CheckRate(double value)
    {
        if (double.IsNaN(value) || value < 0 || value > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, "A rate is between 0 and 1.");
        }

        return value;
    }

    private static void UpdateMax(ref int max, int candidate)
    {
        int seen;
        while (candidate > (seen = Volatile.Read(ref max)) && Interlocked.CompareExchange(ref max, candidate, seen) != seen)
        {
        }
    }

    private static long WholeSeconds(TimeSpan span) => (long)Math.Floor(span.TotalSeconds);

    private static bool IsMediaType(string? contentType, string expected)
    {
        if (contentType is null)
        {
            return false;
        }

        var semicolon = contentType.IndexOf(';');
        var mediaType = (semicolon < 0 ? contentType : contentType[..semicolon]).Trim();
        return string.Equals(mediaType, expected, StringComparison.OrdinalIgnoreCase);
    }

    private static string? First(List<KeyValuePair<string, string>> form, string key)
    {
        foreach (var pair in form)
        {
            if (pair.Key == key)
            {
                return pair.Value;
            }
        }

        return null;
    }

    private static string? QueryValue(string query, string key)
    {
        if (query.Length == 0 || !TryParseForm(Encoding.UTF8.GetBytes(query), out var pairs))
        {
            return null;
        }

        return First(pairs, key);
    }

    /// <summary>Parses an application/x-www-form-urlencoded body the way Go's url.ParseQuery does (first value wins).</summary>
    private static bool TryParseForm(byte[] body, out List<KeyValuePair<string, string>> pairs)
    {
        pairs = new List<KeyValuePair<string, string>>();
        ReadOnlySpan<byte> span = body;
        while (!span.IsEmpty)
        {
            var amp = span.IndexOf((byte)'&');
            var part = amp < 0 ? span : span[..amp];
            span = amp < 0 ? ReadOnlySpan<byte>.Empty : span[(amp + 1)..];
            if (part.IsEmpty)
            {
                continue;
            }

            var eq = part.IndexOf((byte)'=');
            var rawKey = eq < 0 ? part : part[..eq];
            var rawValue = eq < 0 ? ReadOnlySpan<byte>.Empty : part[(eq + 1)..];
            if (!TryFormDecode(rawKey, out var key) || !TryFormDecode(rawValue, out var value))
            {
                return false;
            }

            pairs.Add(new KeyValuePair<string, string>(Encoding.UTF8.GetString(key), Encoding.UTF8.GetString(value)));
        }

        return true;
    }

    /// <summary>Form-decodes bytes: '+' is a space, %XX a byte; a malformed escape fails (as Go's url.QueryUnescape).</summary>
    private static bool TryFormDecode(ReadOnlySpan<byte> input, out byte[] output)
    {
        var result = new byte[input.Length];
        var length = 0;
        for (var i = 0; i < input.Length; i++)
        {
            var b = input[i];
            if (b == (byte)'+')
            {
                result[length++] = (byte)' ';
            }
            else if (b == (byte)'%')
            {
                if (i + 2 >= input.Length || HexValue(input[i + 1]) < 0 || HexValue(input[i + 2]) < 0)
                {
                    output = [];
                    return false;
                }

                result[length++] = (byte)((HexValue(input[i + 1]) << 4) | HexValue(input[i + 2]));
                i += 2;
            }
            else
            {
                result[length++] = b;
            }
        }

        output = result.AsSpan(0, length).ToArray();
        return true;
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
