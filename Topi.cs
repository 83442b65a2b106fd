// Topi.cs — a single-file C# client for the topi Seller API: OAuth 2.0 client credentials,
// a thread-safe token cache with refresh-ahead, and authenticated request helpers.
//
// Version:      1.0.1 (see CHANGELOG.md)
// License:      MIT (see LICENSE) — copy this file into your project, no package needed.
// Requires:     .NET 8 or later, C# 12; base class library only (no NuGet, no reflection in the
//               hot or default paths; trim- and Native-AOT-safe unless a member says otherwise).
// Defines:      TOPI_PUBLIC — makes the types public (default: internal, so a vendored copy never
//               leaks into your assembly's public API and two copies never clash). Set it in
//               <DefineConstants>, never by editing this file.
// Docs:         README.md next to this file in the repository it came from.
//
// Reading order: public options and types, the token provider, the HTTP helpers, then private
// parsing and plumbing.

#nullable enable

using System;
using System.Buffers;
using System.Collections.Generic;
using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.IO;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using System.Threading;
using System.Threading.Tasks;

namespace Topi
{
#if TOPI_PUBLIC
    // The public API, in one place: with TOPI_PUBLIC defined these declarations make the types
    // public; without it every type stays internal (C#'s default for a type declared without a
    // modifier), so a vendored copy is invisible outside the host assembly.
    public sealed partial class TopiEnvironment { }
    public sealed partial class TopiOptions { }
    public sealed partial class TopiToken { }
    public sealed partial class TopiTokenProvider { }
    public sealed partial class TopiAuthenticationHandler { }
    public sealed partial class TopiClient { }
    public partial class TopiException { }
    public sealed partial class TopiAuthenticationException { }
    public sealed partial class TopiApiException { }
#endif

    // ---------------------------------------------------------------------------------------
    // Public options and types
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// A topi environment: the OAuth 2.0 token endpoint and the Seller API base address that belong
    /// together. Credentials and tokens are per environment: a Sandbox token is rejected in
    /// Production and the other way round.
    /// </summary>
    sealed partial class TopiEnvironment
    {
        /// <summary>topi Production: <c>https://identity.topi.eu/oauth2/token</c> and <c>https://seller-api.topi.eu/</c>.</summary>
        public static TopiEnvironment Production { get; } = new TopiEnvironment(
            "production", new Uri("https://identity.topi.eu/oauth2/token"), new Uri("https://seller-api.topi.eu/"));

        /// <summary>topi Sandbox: <c>https://identity.topi-sandbox.eu/oauth2/token</c> and <c>https://seller-api-sandbox.topi-sandbox.eu/</c>.</summary>
        public static TopiEnvironment Sandbox { get; } = new TopiEnvironment(
            "sandbox", new Uri("https://identity.topi-sandbox.eu/oauth2/token"), new Uri("https://seller-api-sandbox.topi-sandbox.eu/"));

        /// <summary>
        /// Creates a custom environment, for a proxy or a local fake server. Both addresses must be
        /// absolute and HTTPS, except on loopback (127.0.0.0/8, [::1], localhost), where HTTP is allowed.
        /// </summary>
        /// <param name="name">A short name used in telemetry and messages, such as <c>"staging"</c>.</param>
        /// <param name="tokenEndpoint">The OAuth 2.0 token endpoint, such as <c>https://identity.topi.eu/oauth2/token</c>.</param>
        /// <param name="apiBaseAddress">The Seller API base address; relative request paths resolve against it.</param>
        /// <exception cref="ArgumentException">A value is missing, relative, or not HTTPS off loopback.</exception>
        public TopiEnvironment(string name, Uri tokenEndpoint, Uri apiBaseAddress)
        {
            if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("An environment needs a name.", nameof(name));
            Name = name;
            TokenEndpoint = TopiPlumbing.RequireSecureAbsolute(tokenEndpoint, nameof(tokenEndpoint));
            Uri api = TopiPlumbing.RequireSecureAbsolute(apiBaseAddress, nameof(apiBaseAddress));
            if (api.Query.Length > 0 || api.Fragment.Length > 0)
                throw new ArgumentException("apiBaseAddress must not have a query or a fragment: request paths are appended to it.", nameof(apiBaseAddress));
            // A base address without a trailing slash would drop its last segment when a relative path is resolved.
            ApiBaseAddress = api.AbsolutePath.EndsWith('/') ? api : new Uri(api.AbsoluteUri + "/");
        }

        /// <summary>The environment's name, such as <c>production</c> or <c>sandbox</c>.</summary>
        public string Name { get; }

        /// <summary>The OAuth 2.0 token endpoint.</summary>
        public Uri TokenEndpoint { get; }

        /// <summary>The Seller API base address, always ending with <c>/</c>.</summary>
        public Uri ApiBaseAddress { get; }

        /// <summary>Returns the environment's name.</summary>
        public override string ToString() => Name;
    }

    /// <summary>
    /// Settings for <see cref="TopiTokenProvider"/> and <see cref="TopiClient"/>. They are validated and
    /// copied when a provider or client is built, so changing them afterwards has no effect.
    /// </summary>
    sealed partial class TopiOptions
    {
        /// <summary>The OAuth 2.0 client id. Required.</summary>
        public string ClientId { get; set; } = "";

        /// <summary>The OAuth 2.0 client secret. Required; it is sent only to the token endpoint and never appears in a message.</summary>
        [DebuggerBrowsable(DebuggerBrowsableState.Never)]
        public string ClientSecret { get; set; } = "";

        /// <summary>The environment to talk to. Default: <see cref="TopiEnvironment.Sandbox"/>, so that a forgotten setting never touches Production.</summary>
        public TopiEnvironment Environment { get; set; } = TopiEnvironment.Sandbox;

        /// <summary>The scope requested with the token. Default: <c>client</c>, as topi's guide prescribes.</summary>
        public string Scope { get; set; } = "client";

        /// <summary>
        /// How long before its expiry a token stops being used. Default: 60 seconds. It never exceeds half
        /// a token's lifetime, so short-lived tokens are still reused.
        /// </summary>
        public TimeSpan ExpirySkew { get; set; } = TimeSpan.FromSeconds(60);

        /// <summary>
        /// How long before a token becomes unusable a background renewal starts, while callers keep the
        /// current token. Default: 5 minutes, at most the last 20 % of the usable lifetime. Zero disables it.
        /// </summary>
        public TimeSpan RefreshAhead { get; set; } = TimeSpan.FromMinutes(5);

        /// <summary>
        /// The deadline of one logical operation: a token renewal with all its attempts, or one Seller API
        /// call through <see cref="TopiClient"/> with its retries. Default: 30 seconds.
        /// </summary>
        public TimeSpan RequestTimeout { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>Attempts per token renewal when the token endpoint fails transiently. Default: 3; 1 disables retries.</summary>
        public int MaxTokenAttempts { get; set; } = 3;

        /// <summary>Retries of an idempotent Seller API request (GET, HEAD, PUT, DELETE, OPTIONS) that failed transiently. Default: 2; 0 disables them.</summary>
        public int MaxApiRetries { get; set; } = 2;

        /// <summary>The first retry's backoff ceiling; it doubles with each retry and the actual delay is drawn at random below it (full jitter). Default: 250 ms.</summary>
        public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(250);

        /// <summary>The longest wait for a <c>Retry-After</c> header or between token renewals during an outage. Default: 30 seconds.</summary>
        public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(30);

        /// <summary>
        /// The clock for token expiry, timers, token request deadlines and backoff. Default: <see cref="System.TimeProvider.System"/>;
        /// tests pass a fake one. (A <see cref="TopiClient"/> call's own deadline is its <see cref="HttpClient.Timeout"/>, on real time.)
        /// </summary>
        public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

        // Validates every setting and returns a private copy. Messages name the property, never the value.
        internal TopiOptions ValidateAndCopy()
        {
            RequireCredential(ClientId, nameof(ClientId));
            RequireCredential(ClientSecret, nameof(ClientSecret));
            if (Environment is null) throw new ArgumentException("Environment is required.", nameof(Environment));
            if (string.IsNullOrWhiteSpace(Scope) || TopiPlumbing.HasControlCharacter(Scope) || !TopiPlumbing.IsValidUnicode(Scope))
                throw new ArgumentException("Scope must be a non-empty, space-separated list without control characters.", nameof(Scope));
            RequireRange(ExpirySkew, TimeSpan.Zero, TimeSpan.FromHours(1), nameof(ExpirySkew));
            RequireRange(RefreshAhead, TimeSpan.Zero, TimeSpan.FromHours(1), nameof(RefreshAhead));
            RequireRange(RequestTimeout, TimeSpan.FromMilliseconds(1), TimeSpan.FromHours(1), nameof(RequestTimeout));
            RequireRange(RetryBaseDelay, TimeSpan.Zero, TimeSpan.FromMinutes(5), nameof(RetryBaseDelay));
            RequireRange(MaxRetryDelay, TimeSpan.Zero, TimeSpan.FromHours(1), nameof(MaxRetryDelay));
            if (MaxTokenAttempts < 1 || MaxTokenAttempts > 10) throw new ArgumentOutOfRangeException(nameof(MaxTokenAttempts), MaxTokenAttempts, "Must be between 1 and 10.");
            if (MaxApiRetries < 0 || MaxApiRetries > 10) throw new ArgumentOutOfRangeException(nameof(MaxApiRetries), MaxApiRetries, "Must be between 0 and 10.");
            if (TimeProvider is null) throw new ArgumentException("TimeProvider is required.", nameof(TimeProvider));
            return (TopiOptions)MemberwiseClone();
        }

        private static void RequireCredential(string? value, string name)
        {
            if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException(name + " is required.", name);
            // CR/LF or other control characters would let a value inject headers or hide in logs.
            if (TopiPlumbing.HasControlCharacter(value)) throw new ArgumentException(name + " contains a control character.", name);
            // A lone surrogate would be sent as U+FFFD: silently a different credential.
            if (!TopiPlumbing.IsValidUnicode(value)) throw new ArgumentException(name + " is not valid Unicode (a lone surrogate).", name);
        }

        private static void RequireRange(TimeSpan value, TimeSpan min, TimeSpan max, string name)
        {
            if (value < min || value > max)
                throw new ArgumentOutOfRangeException(name, value, "Must be between " + min + " and " + max + ".");
        }
    }

    /// <summary>An OAuth 2.0 access token issued by topi. <see cref="ToString"/> never shows the token itself.</summary>
    sealed partial class TopiToken
    {
        /// <summary>Creates a token. The library creates these; tests and custom providers may too.</summary>
        /// <param name="accessToken">The access token, visible ASCII only.</param>
        /// <param name="expiresAt">When the token server says the token expires.</param>
        /// <param name="scopes">The granted scopes.</param>
        public TopiToken(string accessToken, DateTimeOffset expiresAt, IReadOnlyList<string> scopes)
        {
            if (string.IsNullOrEmpty(accessToken) || !TopiPlumbing.IsVisibleAscii(accessToken))
                throw new ArgumentException("An access token must be non-empty visible ASCII.", nameof(accessToken));
            AccessToken = accessToken;
            ExpiresAt = expiresAt;
            Scopes = scopes ?? throw new ArgumentNullException(nameof(scopes));
            // Built once so that attaching the token to a request allocates nothing.
            AuthorizationHeader = new AuthenticationHeaderValue("Bearer", accessToken);
        }

        /// <summary>The access token (a JWT at topi). Treat it as a secret: never log it.</summary>
        public string AccessToken { get; }

        /// <summary>The token type: always <c>Bearer</c> (the only type topi issues and this client accepts).</summary>
        public string TokenType { get; } = "Bearer";

        /// <summary>When the token expires, by the wall clock, as the token endpoint stated it.</summary>
        public DateTimeOffset ExpiresAt { get; }

        /// <summary>The granted scopes, from the space-separated <c>scope</c> of the token response.</summary>
        public IReadOnlyList<string> Scopes { get; }

        /// <summary>Whether <paramref name="scope"/> was granted.</summary>
        public bool HasScope(string scope)
        {
            foreach (string s in Scopes) if (string.Equals(s, scope, StringComparison.Ordinal)) return true;
            return false;
        }

        /// <summary>A redacted description: type, expiry and scopes, never the token.</summary>
        public override string ToString() =>
            "Bearer [redacted], expires " + ExpiresAt.ToString("u", CultureInfo.InvariantCulture) + ", scopes: "
            + TopiPlumbing.Printable(string.Join(" ", Scopes).Replace(AccessToken, "[redacted]", StringComparison.Ordinal));

        internal AuthenticationHeaderValue AuthorizationHeader { get; }
    }

    /// <summary>The base of every error this client raises on purpose. Messages never contain a secret or a token.</summary>
    partial class TopiException : Exception
    {
        /// <summary>Creates an exception.</summary>
        public TopiException(string message, HttpStatusCode? statusCode = null, Exception? innerException = null)
            : base(message, innerException) => StatusCode = statusCode;

        /// <summary>The HTTP status of the response that caused the error, or <c>null</c> when none arrived.</summary>
        public HttpStatusCode? StatusCode { get; }

        /// <summary>Whether trying again later may succeed (a timeout, a dropped connection, 408, 429 or 5xx, or a topi error marked temporary).</summary>
        public bool IsTransient { get; init; }

        // The server's Retry-After, when it sent one; used for backoff only.
        internal TimeSpan? RetryAfter { get; init; }
    }

    /// <summary>The token endpoint refused or failed to issue a token.</summary>
    sealed partial class TopiAuthenticationException : TopiException
    {
        /// <summary>Creates an exception.</summary>
        public TopiAuthenticationException(string message, HttpStatusCode? statusCode = null, string? error = null,
            string? errorDescription = null, Exception? innerException = null)
            : base(message, statusCode, innerException)
        {
            Error = error;
            ErrorDescription = errorDescription;
        }

        /// <summary>The OAuth 2.0 <c>error</c> code, such as <c>invalid_client</c>, when the endpoint sent one.</summary>
        public string? Error { get; }

        /// <summary>The OAuth 2.0 <c>error_description</c>, when the endpoint sent one.</summary>
        public string? ErrorDescription { get; }
    }

    /// <summary>The Seller API answered with an error status.</summary>
    sealed partial class TopiApiException : TopiException
    {
        /// <summary>Creates an exception.</summary>
        public TopiApiException(string message, HttpStatusCode statusCode, string? errorName = null, string? errorId = null,
            string? errorMessage = null, bool temporary = false, bool timeout = false, bool fault = false)
            : base(message, statusCode)
        {
            ErrorName = errorName;
            ErrorId = errorId;
            ErrorMessage = errorMessage;
            Temporary = temporary;
            Timeout = timeout;
            Fault = fault;
        }

        /// <summary>The goa error's <c>name</c>, such as <c>unprocessable</c>, when the body was a goa error.</summary>
        public string? ErrorName { get; }

        /// <summary>The goa error's <c>id</c>, to quote to topi's support.</summary>
        public string? ErrorId { get; }

        /// <summary>The goa error's <c>message</c>, or the plain JSON string of a 401 or 403 body.</summary>
        public string? ErrorMessage { get; }

        /// <summary>The goa error's <c>temporary</c> flag: the same request may succeed later.</summary>
        public bool Temporary { get; }

        /// <summary>The goa error's <c>timeout</c> flag.</summary>
        public bool Timeout { get; }

        /// <summary>The goa error's <c>fault</c> flag: a server-side fault, not the request's.</summary>
        public bool Fault { get; }
    }

    // ---------------------------------------------------------------------------------------
    // The token provider
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// Gets OAuth 2.0 client-credentials tokens from topi and shares one cached token among all callers.
    /// </summary>
    /// <remarks>
    /// A cache hit takes no lock, reads no clock and allocates nothing: timers made through the
    /// <see cref="TimeProvider"/> mark the token "renew soon" and then "expired", checking both the
    /// monotonic and the wall clock. Concurrent misses share one request; a caller's cancellation ends
    /// only its own wait. Failed renewals are spaced out (1 s doubling to <see cref="TopiOptions.MaxRetryDelay"/>),
    /// and callers during that pause fail fast with the last error, so an outage never floods the identity server.
    /// </remarks>
    sealed partial class TopiTokenProvider : IDisposable
    {
        private const int Fresh = 0, RenewSoon = 1, Expired = 2;
        private static readonly TimeSpan MinLifetime = TimeSpan.FromSeconds(1);
        private static readonly TimeSpan MaxLifetime = TimeSpan.FromHours(24);
        private static readonly TimeSpan WallClockCheckPeriod = TimeSpan.FromSeconds(1);
        private static readonly TimeSpan FirstOutagePause = TimeSpan.FromSeconds(1);

        private readonly TopiOptions _options;
        private readonly TimeProvider _time;
        private readonly HttpClient _http;
        private readonly bool _ownsHttp;
        private readonly string _basicCredentials;
        private readonly string[] _secretForms; // the secret as a server may echo it (TopiPlumbing.SecretForms)
        private readonly byte[] _formBody;
        private readonly IReadOnlyList<string> _requestedScopes;
        private readonly ITimer _timer;
        private readonly CancellationTokenSource _disposed = new CancellationTokenSource();
        private readonly object _sync = new object();

        // The hit path reads _entry and its State, nothing else.
        private volatile Entry _entry = Entry.None;

        // Guarded by _sync.
        private Task<TopiToken>? _renewal;
        private TopiToken? _previousToken; // the one the last renewal replaced: never shown in a message either
        private Exception? _lastFailure;
        private int _consecutiveFailures;
        private long _pausedUntil; // monotonic timestamp before which no renewal starts

        /// <summary>Creates a provider that uses its own connection pool.</summary>
        /// <exception cref="ArgumentException">An option is invalid; the message names it, never its value.</exception>
        public TopiTokenProvider(TopiOptions options) : this(options, httpClient: null) { }

        /// <summary>Creates a provider that sends token requests through <paramref name="handler"/>, which it does not dispose.</summary>
        public TopiTokenProvider(TopiOptions options, HttpMessageHandler handler)
            : this(options, new HttpClient(TopiPlumbing.RequireNoAutoRedirect(handler ?? throw new ArgumentNullException(nameof(handler)), nameof(handler)), disposeHandler: false) { Timeout = System.Threading.Timeout.InfiniteTimeSpan }, owns: true) { }

        /// <summary>
        /// Creates a provider that sends token requests through <paramref name="httpClient"/> (or its own
        /// connection pool when <c>null</c>). A caller's client is not disposed; give it a handler that does
        /// not follow redirects, because the token request must never be redirected.
        /// </summary>
        public TopiTokenProvider(TopiOptions options, HttpClient? httpClient)
            : this(options, httpClient ?? new HttpClient(TopiPlumbing.CreateDefaultHandler(), disposeHandler: true) { Timeout = System.Threading.Timeout.InfiniteTimeSpan }, owns: httpClient is null) { }

        private TopiTokenProvider(TopiOptions options, HttpClient httpClient, bool owns)
        {
            if (options is null) { if (owns) httpClient.Dispose(); throw new ArgumentNullException(nameof(options)); }
            try { _options = options.ValidateAndCopy(); }
            catch { if (owns) httpClient.Dispose(); throw; }
            _http = httpClient;
            _ownsHttp = owns;
            _time = _options.TimeProvider;
            // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            _basicCredentials = Convert.ToBase64String(Encoding.UTF8.GetBytes(
                TopiPlumbing.FormEncode(_options.ClientId) + ":" + TopiPlumbing.FormEncode(_options.ClientSecret)));
            _secretForms = TopiPlumbing.SecretForms(_options.ClientSecret, _basicCredentials);
            _formBody = Encoding.ASCII.GetBytes("grant_type=client_credentials&scope=" + TopiPlumbing.FormEncode(_options.Scope));
            _requestedScopes = _options.Scope.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            // The timer holds the provider weakly, so an undisposed provider can still be collected, and it
            // captures no execution context, so nothing ambient at construction leaks into later renewals.
            using (ExecutionContext.SuppressFlow())
                _timer = _time.CreateTimer(static state => { if (((WeakReference<TopiTokenProvider>)state!).TryGetTarget(out TopiTokenProvider? p)) p.OnTimer(); },
                    new WeakReference<TopiTokenProvider>(this), System.Threading.Timeout.InfiniteTimeSpan, System.Threading.Timeout.InfiniteTimeSpan);
        }

        /// <summary>The environment this provider gets tokens for.</summary>
        public TopiEnvironment Environment => _options.Environment;

        /// <summary>
        /// Returns a valid token: the cached one (synchronously, without allocating) or a fresh one.
        /// </summary>
        /// <param name="cancellationToken">Ends this caller's wait only; a shared request goes on for the others.</param>
        /// <exception cref="TopiAuthenticationException">The token endpoint refused or failed; see <see cref="TopiException.IsTransient"/>.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
        public ValueTask<TopiToken> GetTokenAsync(CancellationToken cancellationToken = default)
        {
            Entry entry = _entry;
            if (entry.State == Fresh) return new ValueTask<TopiToken>(entry.Token!);
            return GetTokenSlowAsync(cancellationToken);
        }

        /// <summary>
        /// Drops <paramref name="token"/> from the cache if it is still the current one, typically after
        /// the API rejected it with 401. Any number of concurrent calls for the same token cause one renewal.
        /// </summary>
        public void Invalidate(TopiToken token)
        {
            ArgumentNullException.ThrowIfNull(token);
            Entry entry = _entry;
            if (ReferenceEquals(entry.Token, token)) entry.Raise(Expired);
        }

        /// <summary>Stops the timers, cancels a renewal in flight and releases the connection pool this provider created.</summary>
        public void Dispose()
        {
            lock (_sync)
            {
                if (_disposed.IsCancellationRequested) return;
                _disposed.Cancel();
                _entry = Entry.None;
            }
            _timer.Dispose();
            if (_ownsHttp) _http.Dispose();
        }

        // Not async: every waiter shares the renewal's one task instead of a state machine of its own.
        private ValueTask<TopiToken> GetTokenSlowAsync(CancellationToken cancellationToken)
        {
            Entry entry = _entry;
            if (Evaluate(entry) == RenewSoon)
            {
                // Refresh-ahead: the current token is still good, so this caller gets it at once and, unless a
                // renewal is running or a pause after a failure holds, starts one renewal in the background.
                if (Volatile.Read(ref _renewal) is null && _time.GetTimestamp() >= Volatile.Read(ref _pausedUntil))
                {
                    lock (_sync)
                        if (_renewal is null && ReferenceEquals(_entry, entry)) StartRenewal();
                }
                return new ValueTask<TopiToken>(entry.Token!);
            }
            Task<TopiToken> renewal;
            lock (_sync)
            {
                ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
                if (_renewal is null)
                {
                    entry = _entry;
                    if (Evaluate(entry) != Expired) return new ValueTask<TopiToken>(entry.Token!); // renewed meanwhile
                    if (_lastFailure is not null && _time.GetTimestamp() < _pausedUntil) return ValueTask.FromException<TopiToken>(PausedError());
                    StartRenewal();
                }
                renewal = _renewal!;
            }
            TopiTelemetry.CacheMisses.Add(1);
            return new ValueTask<TopiToken>(cancellationToken.CanBeCanceled ? renewal.WaitAsync(cancellationToken) : renewal);
        }

        // Caller holds _sync.
        private void StartRenewal()
        {
            // Task.Run with no flowing context: the shared request belongs to no caller, so no caller's
            // cancellation, AsyncLocal or synchronization context can reach it.
            using (ExecutionContext.SuppressFlow())
                _renewal = Task.Run(RenewAsync);
            // A background renewal may fail with nobody waiting: observe it, so it is never an unobserved exception.
            _renewal.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        private async Task<TopiToken> RenewAsync()
        {
            try
            {
                Entry entry = await RequestTokenAsync().ConfigureAwait(false);
                lock (_sync)
                {
                    _renewal = null;
                    _lastFailure = null;
                    _consecutiveFailures = 0;
                    if (!_disposed.IsCancellationRequested)
                    {
                        _previousToken = _entry.Token ?? _previousToken;
                        _entry = entry;
                        ScheduleTimer(entry);
                    }
                }
                return entry.Token!;
            }
            catch (Exception ex)
            {
                lock (_sync)
                {
                    _renewal = null;
                    _lastFailure = ex;
                    _consecutiveFailures++;
                    // Outage protection: 1 s, 2 s, 4 s ... up to MaxRetryDelay, or longer if the server asked for it.
                    TimeSpan pause = TopiPlumbing.Min(_options.MaxRetryDelay,
                        FirstOutagePause * Math.Pow(2, Math.Min(_consecutiveFailures - 1, 16)));
                    if (ex is TopiException { RetryAfter: TimeSpan serverPause })
                        pause = TopiPlumbing.Max(pause, TopiPlumbing.Min(serverPause, _options.MaxRetryDelay));
                    Volatile.Write(ref _pausedUntil, _time.GetTimestamp() + TopiPlumbing.ToTimestampTicks(pause, _time));
                }
                TopiTelemetry.TokenFailures.Add(1);
                throw;
            }
        }

        private TopiAuthenticationException PausedError()
        {
            Exception last = _lastFailure!;
            var auth = last as TopiAuthenticationException;
            return new TopiAuthenticationException(
                "Token renewal is paused after a failure, to spare the token endpoint; the last error was: " + last.Message,
                auth?.StatusCode, auth?.Error, auth?.ErrorDescription, last) { IsTransient = last is not TopiException t || t.IsTransient };
        }

        // One renewal: up to MaxTokenAttempts requests with full-jitter backoff, all within RequestTimeout.
        private async Task<Entry> RequestTokenAsync()
        {
            using var deadline = new CancellationTokenSource(_options.RequestTimeout, _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadline.Token, _disposed.Token);
            long start = _time.GetTimestamp();
            for (int attempt = 1; ; attempt++)
            {
                TimeSpan delay;
                ExceptionDispatchInfo failure;
                try
                {
                    return await RequestTokenOnceAsync(attempt, start, linked.Token).ConfigureAwait(false);
                }
                catch (TopiAuthenticationException ex) when (ex.IsTransient && attempt < _options.MaxTokenAttempts && !linked.IsCancellationRequested)
                {
                    delay = TopiPlumbing.RetryDelay(_options, attempt, ex.RetryAfter);
                    if (_time.GetElapsedTime(start) + delay >= _options.RequestTimeout) throw; // no time left: report the real error
                    failure = ExceptionDispatchInfo.Capture(ex);
                }
                try { await Task.Delay(delay, _time, linked.Token).ConfigureAwait(false); }
                catch (OperationCanceledException)
                {
                    // Disposed while waiting, or the deadline came first after all: say which, never "canceled".
                    ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
                    failure.Throw();
                }
            }
        }

        private async Task<Entry> RequestTokenOnceAsync(int attempt, long renewalStart, CancellationToken renewalToken)
        {
            Uri endpoint = _options.Environment.TokenEndpoint;
            using Activity? activity = TopiTelemetry.Source.StartActivity("topi token request", ActivityKind.Client);
            activity?.SetTag("topi.environment", _options.Environment.Name);
            activity?.SetTag("topi.attempt", attempt);
            TopiTelemetry.TokenRequests.Add(1);
            long sentAt = _time.GetTimestamp();
            DateTimeOffset sentAtWall = _time.GetUtcNow();
            // Each attempt gets an equal share of what is left of the renewal's deadline.
            TimeSpan left = _options.RequestTimeout - _time.GetElapsedTime(renewalStart);
            using var attemptTimeout = new CancellationTokenSource(TopiPlumbing.Max(TimeSpan.FromMilliseconds(1), left / (_options.MaxTokenAttempts - attempt + 1)), _time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(renewalToken, attemptTimeout.Token);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, endpoint);
                request.Headers.Authorization = new AuthenticationHeaderValue("Basic", _basicCredentials);
                request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
                request.Content = new ByteArrayContent(_formBody);
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/x-www-form-urlencoded");
                using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, linked.Token).ConfigureAwait(false);
                activity?.SetTag("http.response.status_code", (int)response.StatusCode);
                byte[] body;
                try { body = await TopiPlumbing.ReadCappedAsync(response.Content, TopiPlumbing.MaxTokenResponseBytes, linked.Token).ConfigureAwait(false); }
                catch (TopiAuthenticationException tooLarge) // the size cap: report it with the status it came with
                {
                    throw new TopiAuthenticationException("The token endpoint answered " + (int)response.StatusCode + " " + response.ReasonPhrase + ": " + tooLarge.Message,
                        response.StatusCode) { IsTransient = TopiProtocol.IsTransientStatus(response.StatusCode) };
                }
                if (response.RequestMessage?.RequestUri is Uri final && final != endpoint)
                    throw new TopiAuthenticationException("The token request was redirected; refusing a redirected token response.", response.StatusCode);
                TopiToken token = TopiProtocol.ParseTokenResponse(response, body, sentAtWall, _time, _requestedScopes, Redactions(null), out TimeSpan lifetime);
                TopiTelemetry.TokenDuration.Record(_time.GetElapsedTime(sentAt).TotalSeconds);
                return CreateEntry(token, lifetime, sentAt, sentAtWall);
            }
            catch (Exception ex) when (ex is not TopiAuthenticationException)
            {
                activity?.SetStatus(ActivityStatusCode.Error);
                if (ex is OperationCanceledException) ObjectDisposedException.ThrowIf(_disposed.IsCancellationRequested, this);
                if (ex is OperationCanceledException)
                    throw new TopiAuthenticationException("The token request timed out.", innerException: ex) { IsTransient = true };
                if (ex is HttpRequestException or IOException)
                    throw new TopiAuthenticationException("The token request failed: " + TopiPlumbing.Sanitize(ex.Message), innerException: ex) { IsTransient = true };
                throw;
            }
            catch (TopiAuthenticationException)
            {
                activity?.SetStatus(ActivityStatusCode.Error);
                throw;
            }
        }

        // Works out when the token should be renewed and when it stops being used, on both clocks.
        private Entry CreateEntry(TopiToken token, TimeSpan lifetime, long sentAt, DateTimeOffset sentAtWall)
        {
            TimeSpan skew = TopiPlumbing.Min(_options.ExpirySkew, lifetime / 2);
            TimeSpan usable = lifetime - skew;
            TimeSpan ahead = TopiPlumbing.Min(_options.RefreshAhead, usable / 5);
            return new Entry(token,
                renewAt: sentAt + TopiPlumbing.ToTimestampTicks(usable - ahead, _time), expireAt: sentAt + TopiPlumbing.ToTimestampTicks(usable, _time),
                renewAtWall: sentAtWall + (usable - ahead), expireAtWall: sentAtWall + usable);
        }

        // Raises entry.State to what the clocks say now; never lowers it (Invalidate may have raised it).
        private int Evaluate(Entry entry)
        {
            if (entry.Token is null) return Expired;
            long now = _time.GetTimestamp();
            DateTimeOffset wall = _time.GetUtcNow();
            int state = now >= entry.ExpireAt || wall >= entry.ExpireAtWall ? Expired
                : now >= entry.RenewAt || wall >= entry.RenewAtWall ? RenewSoon : Fresh;
            return entry.Raise(state);
        }

        private void OnTimer()
        {
            lock (_sync)
            {
                if (_disposed.IsCancellationRequested) return;
                Entry entry = _entry;
                Evaluate(entry);
                ScheduleTimer(entry);
            }
        }

        // Caller holds _sync. Fires at the next state change, and at least every second so that a
        // wall-clock jump or a machine's sleep (which stops the monotonic clock) is noticed promptly.
        private void ScheduleTimer(Entry entry)
        {
            if (entry.Token is null || entry.State == Expired)
            {
                _timer.Change(System.Threading.Timeout.InfiniteTimeSpan, System.Threading.Timeout.InfiniteTimeSpan);
                return;
            }
            bool fresh = entry.State == Fresh;
            TimeSpan monotonic = TopiPlumbing.FromTimestampTicks((fresh ? entry.RenewAt : entry.ExpireAt) - _time.GetTimestamp(), _time);
            TimeSpan wall = (fresh ? entry.RenewAtWall : entry.ExpireAtWall) - _time.GetUtcNow();
            TimeSpan due = TopiPlumbing.Max(TimeSpan.Zero, TopiPlumbing.Min(WallClockCheckPeriod, TopiPlumbing.Min(monotonic, wall)));
            _timer.Change(due, System.Threading.Timeout.InfiniteTimeSpan);
        }

        private sealed class Entry
        {
            internal static readonly Entry None = new Entry(null, 0, 0, default, default, Expired);

            internal Entry(TopiToken? token, long renewAt, long expireAt, DateTimeOffset renewAtWall, DateTimeOffset expireAtWall, int state = Fresh)
            {
                _state = state;
                Token = token;
                RenewAt = renewAt;
                ExpireAt = expireAt;
                RenewAtWall = renewAtWall;
                ExpireAtWall = expireAtWall;
            }

            internal readonly TopiToken? Token;
            internal readonly long RenewAt, ExpireAt;
            internal readonly DateTimeOffset RenewAtWall, ExpireAtWall;
            private int _state;

            internal int State => Volatile.Read(ref _state);

            // Moves the state forward (Fresh → RenewSoon → Expired), never back, whoever races; returns the state now.
            internal int Raise(int state)
            {
                int current;
                while ((current = Volatile.Read(ref _state)) < state && Interlocked.CompareExchange(ref _state, state, current) != current) { }
                return Math.Max(current, state);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // The HTTP helpers
    // ---------------------------------------------------------------------------------------

    /// <summary>
    /// A <see cref="DelegatingHandler"/> that attaches topi's bearer token to requests for the Seller API
    /// origin (and to no other host), renews the token once after a 401, and retries idempotent requests
    /// that failed transiently. Plug it into <c>IHttpClientFactory</c> with <c>AddHttpMessageHandler</c>.
    /// </summary>
    sealed partial class TopiAuthenticationHandler : DelegatingHandler
    {
        /// <summary>Set this option to <c>true</c> on a request to turn off its transient-failure retries (the 401 renewal still happens).</summary>
        public static readonly HttpRequestOptionsKey<bool> DisableRetries = new HttpRequestOptionsKey<bool>("Topi.DisableRetries");

        private readonly TopiTokenProvider _tokens;
        private readonly TopiOptions _options;
        private readonly string _scheme, _host, _originPrefix;
        private readonly int _port;

        /// <summary>Creates a handler for the provider's environment; set <see cref="DelegatingHandler.InnerHandler"/> (the HTTP client factory does).</summary>
        public TopiAuthenticationHandler(TopiTokenProvider tokenProvider)
        {
            _tokens = tokenProvider ?? throw new ArgumentNullException(nameof(tokenProvider));
            _options = tokenProvider.Options;
            Uri api = _options.Environment.ApiBaseAddress;
            _scheme = api.Scheme;
            _host = api.IdnHost;
            _port = api.Port;
            _originPrefix = api.GetLeftPart(UriPartial.Authority) + "/";
        }

        /// <summary>Creates a handler for the provider's environment that sends through <paramref name="innerHandler"/>.</summary>
        /// <exception cref="ArgumentException"><paramref name="innerHandler"/> follows redirects (set <c>AllowAutoRedirect = false</c>).</exception>
        public TopiAuthenticationHandler(TopiTokenProvider tokenProvider, HttpMessageHandler innerHandler) : this(tokenProvider)
            => InnerHandler = TopiPlumbing.RequireNoAutoRedirect(innerHandler ?? throw new ArgumentNullException(nameof(innerHandler)), nameof(innerHandler));

        /// <summary>Synchronous sending is not supported: it would have to block on the token request. Use <c>SendAsync</c>.</summary>
        /// <exception cref="NotSupportedException">Always.</exception>
        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
            throw new NotSupportedException("TopiAuthenticationHandler supports only asynchronous sending; use HttpClient.SendAsync.");

        /// <inheritdoc/>
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(request);
            if (!IsApiOrigin(request.RequestUri)) return base.SendAsync(request, cancellationToken);

            // Fast path: a cached token and a response that needs nothing more cost no allocation here.
            if (request.Content is null && _tokens.TryGetFreshToken(out TopiToken? token) && !TopiTelemetry.Source.HasListeners())
            {
                request.Headers.Authorization = token.AuthorizationHeader;
                Task<HttpResponseMessage> sent = base.SendAsync(request, cancellationToken);
                if (!sent.IsCompleted) return AwaitFirstSendAsync(request, token, sent, cancellationToken);
                // Completed already, so reading Result cannot block.
                if (sent.IsCompletedSuccessfully && !NeedsRetryLook(sent.Result.StatusCode)) return sent;
                return SendSlowAsync(request, new ValueTask<TopiToken>(token), sent, cancellationToken);
            }
            return SendSlowAsync(request, _tokens.GetTokenAsync(cancellationToken), null, cancellationToken);
        }

        // The usual case on a real connection: only an error status or a failure needs the full path.
        // Not inlined (nor is SendSlowAsync): an inlined async method leaves its state machine in the caller's
        // frame, which every fast-path call would then have to clear.
        [MethodImpl(MethodImplOptions.NoInlining)]
        private async Task<HttpResponseMessage> AwaitFirstSendAsync(HttpRequestMessage request, TopiToken token,
            Task<HttpResponseMessage> sent, CancellationToken cancellationToken)
        {
            try
            {
                HttpResponseMessage response = await sent.ConfigureAwait(false);
                if (!NeedsRetryLook(response.StatusCode)) return response;
            }
            catch (Exception) when (!cancellationToken.IsCancellationRequested)
            {
                // SendSlowAsync awaits the same task again and handles the failure.
            }
            return await SendSlowAsync(request, new ValueTask<TopiToken>(token), sent, cancellationToken).ConfigureAwait(false);
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private async Task<HttpResponseMessage> SendSlowAsync(HttpRequestMessage request, ValueTask<TopiToken> pending,
            Task<HttpResponseMessage>? firstSend, CancellationToken cancellationToken)
        {
            using Activity? activity = TopiTelemetry.Source.StartActivity("topi api request", ActivityKind.Client);
            activity?.SetTag("http.request.method", request.Method.Method);
            activity?.SetTag("topi.environment", _options.Environment.Name);
            TimeProvider time = _options.TimeProvider;
            long start = time.GetTimestamp();
            // The token first, so that a failed token request is always observed.
            TopiToken token = await pending.ConfigureAwait(false);
            bool replayable = await TopiPlumbing.MakeReplayableAsync(request.Content, cancellationToken).ConfigureAwait(false);
            bool retriesOff = request.Options.TryGetValue(DisableRetries, out bool off) && off;
            int retriesLeft = replayable && TopiPlumbing.IsIdempotent(request.Method) && !retriesOff ? _options.MaxApiRetries : 0;
            bool renewed = false;
            for (int attempt = 1; ; attempt++)
            {
                HttpResponseMessage? response = null;
                ExceptionDispatchInfo? failure = null;
                try
                {
                    if (firstSend is null)
                    {
                        request.Headers.Authorization = token.AuthorizationHeader;
                        firstSend = base.SendAsync(request, cancellationToken);
                    }
                    response = await firstSend.ConfigureAwait(false);
                }
                catch (HttpRequestException ex) when (!cancellationToken.IsCancellationRequested)
                {
                    failure = ExceptionDispatchInfo.Capture(ex);
                }
                catch when (activity is not null)
                {
                    activity.SetTag("topi.attempt", attempt);
                    activity.SetStatus(ActivityStatusCode.Error);
                    throw;
                }
                finally
                {
                    firstSend = null;
                }
                activity?.SetTag("topi.attempt", attempt);
                if (response is not null) activity?.SetTag("http.response.status_code", (int)response.StatusCode);

                // An inner handler that follows redirects may have moved the request to another origin: there the
                // token is never renewed, resent or retried (.NET already stripped it from the redirected request).
                if (!IsApiOrigin(request.RequestUri))
                    return Finish(response, failure, activity);

                TimeSpan? retryAfter = null;
                if (response is not null)
                {
                    if (response.StatusCode == HttpStatusCode.Unauthorized && !renewed)
                    {
                        // The token was rejected: drop it, so that later requests get a fresh one even when this
                        // one cannot be replayed.
                        _tokens.Invalidate(token);
                        if (replayable)
                        {
                            // The server rejected the token before acting on the request, so one retry with a fresh
                            // token is safe for any method.
                            renewed = true;
                            response.Dispose();
                            token = await _tokens.GetTokenAsync(cancellationToken).ConfigureAwait(false);
                            continue;
                        }
                    }
                    bool retry = false;
                    try
                    {
                        retry = retriesLeft > 0 && await TopiProtocol.IsRetryableAsync(response, cancellationToken).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is IOException or HttpRequestException && !cancellationToken.IsCancellationRequested)
                    {
                        // The error body broke off: as good as a dropped connection.
                        response.Dispose();
                        response = null;
                        failure = ExceptionDispatchInfo.Capture(ex);
                    }
                    catch
                    {
                        response.Dispose();
                        activity?.SetStatus(ActivityStatusCode.Error);
                        throw;
                    }
                    if (response is not null && !retry) return Finish(response, null, activity);
                    if (response is not null) retryAfter = TopiPlumbing.GetRetryAfter(response, time);
                }
                if (retriesLeft == 0) return Finish(response, failure, activity);

                TimeSpan delay = TopiPlumbing.RetryDelay(_options, attempt, retryAfter);
                // No time left for the wait: the caller gets the real answer now rather than a timeout later.
                if (time.GetElapsedTime(start) + delay >= _options.RequestTimeout) return Finish(response, failure, activity);
                response?.Dispose();
                retriesLeft--;
                TopiTelemetry.ApiRetries.Add(1);
                await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
                // A retry uses whatever token is current now (it may have been renewed meanwhile).
                token = await _tokens.GetTokenAsync(cancellationToken).ConfigureAwait(false);
            }
        }

        // Hands the caller the final response, or rethrows the final failure, and marks the span.
        private static HttpResponseMessage Finish(HttpResponseMessage? response, ExceptionDispatchInfo? failure, Activity? activity)
        {
            if (response is null || !response.IsSuccessStatusCode) activity?.SetStatus(ActivityStatusCode.Error);
            if (response is null) failure!.Throw();
            return response!;
        }

        // Any error status: 401 renews, 429/5xx retry, and a goa error of any status may say "temporary".
        private static bool NeedsRetryLook(HttpStatusCode status) => (int)status >= 400;

        // Scheme, host and port must match the API base address: the token never goes to another origin. A URI
        // written as exactly that origin followed by '/' cannot name another one: that ordinal prefix test (on spans,
        // which inlines better than string.StartsWith) is the cheap common case; HasApiOrigin parses the rest.
        [MethodImpl(MethodImplOptions.AggressiveInlining)] // on every request's path
        private bool IsApiOrigin(Uri? uri) =>
            uri is not null && uri.IsAbsoluteUri && (uri.OriginalString.AsSpan().StartsWith(_originPrefix) || HasApiOrigin(uri));

        private bool HasApiOrigin(Uri uri) =>
            uri.Port == _port
            && string.Equals(uri.Scheme, _scheme, StringComparison.OrdinalIgnoreCase)
            && string.Equals(uri.IdnHost, _host, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The convenience entry point: an authenticated client for the topi Seller API that turns error
    /// responses into <see cref="TopiApiException"/> and reads and writes JSON. One instance per application
    /// (it is thread-safe and owns a long-lived connection pool).
    /// </summary>
    sealed partial class TopiClient : IDisposable
    {
        private readonly TopiOptions _options;
        private readonly HttpMessageHandler? _ownedHandler;
        private volatile bool _disposed;

        /// <summary>Creates a client with its own connection pool (or <paramref name="innerHandler"/>, which it does not dispose).</summary>
        /// <exception cref="ArgumentException">An option is invalid; the message names it, never its value.</exception>
        public TopiClient(TopiOptions options, HttpMessageHandler? innerHandler = null)
        {
            ArgumentNullException.ThrowIfNull(options);
            _options = options.ValidateAndCopy();
            HttpMessageHandler inner = innerHandler is null ? (_ownedHandler = TopiPlumbing.CreateDefaultHandler()) : TopiPlumbing.RequireNoAutoRedirect(innerHandler, nameof(innerHandler));
            TokenProvider = new TopiTokenProvider(_options, inner);
            HttpClient = new HttpClient(new TopiAuthenticationHandler(TokenProvider, inner), disposeHandler: false)
            {
                BaseAddress = _options.Environment.ApiBaseAddress,
                Timeout = _options.RequestTimeout,
            };
        }

        /// <summary>The token provider this client uses; share it to get tokens for other purposes.</summary>
        public TopiTokenProvider TokenProvider { get; }

        /// <summary>An authenticated <see cref="System.Net.Http.HttpClient"/> for raw requests, its base address set to the API; it does not throw on error statuses.</summary>
        public HttpClient HttpClient { get; }

        /// <summary>The environment this client talks to.</summary>
        public TopiEnvironment Environment => _options.Environment;

        /// <summary>Sends a request and returns the response if its status is a success.</summary>
        /// <exception cref="TopiApiException">The API answered with an error status; the response is disposed.</exception>
        /// <exception cref="TopiAuthenticationException">No token could be obtained.</exception>
        public async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(request);
            HttpResponseMessage response;
            try
            {
                // The whole body is read within RequestTimeout, so a stalled body cannot hang a caller.
                response = await HttpClient.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (_disposed)
            {
                throw new ObjectDisposedException(nameof(TopiClient));
            }
            catch (TaskCanceledException ex) when (!cancellationToken.IsCancellationRequested)
            {
                throw new TopiException("The request to " + TopiPlumbing.Describe(request) + " timed out after " + _options.RequestTimeout + ".", null, ex) { IsTransient = true };
            }
            catch (Exception ex) when (ex is HttpRequestException or IOException)
            {
                // A refused, reset or dropped connection (after any retries the handler made).
                throw new TopiException("The request to " + TopiPlumbing.Describe(request) + " failed: " + TopiPlumbing.Sanitize(ex.Message), null, ex) { IsTransient = true };
            }
            if (response.IsSuccessStatusCode) return response;
            using (response)
                throw await TopiProtocol.CreateApiExceptionAsync(request, response, TokenProvider.Redactions(request), cancellationToken).ConfigureAwait(false);
        }

        /// <summary>GETs <paramref name="path"/> (relative to the API base address) and reads the JSON response.</summary>
        public Task<T> GetAsync<T>(string path, JsonTypeInfo<T> responseType, CancellationToken cancellationToken = default) =>
            SendJsonAsync<object, T>(HttpMethod.Get, path, default, null, responseType, cancellationToken);

        /// <summary>POSTs <paramref name="value"/> as JSON and reads the JSON response. Never retried, except once after a 401.</summary>
        public Task<TResponse> PostJsonAsync<TRequest, TResponse>(string path, TRequest value, JsonTypeInfo<TRequest> requestType,
            JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken = default) =>
            SendJsonAsync(HttpMethod.Post, path, value, requestType ?? throw new ArgumentNullException(nameof(requestType)), responseType, cancellationToken);

        /// <summary>PUTs <paramref name="value"/> as JSON and reads the JSON response.</summary>
        public Task<TResponse> PutJsonAsync<TRequest, TResponse>(string path, TRequest value, JsonTypeInfo<TRequest> requestType,
            JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken = default) =>
            SendJsonAsync(HttpMethod.Put, path, value, requestType ?? throw new ArgumentNullException(nameof(requestType)), responseType, cancellationToken);

        /// <summary>PATCHes <paramref name="value"/> as JSON and reads the JSON response. Never retried, except once after a 401.</summary>
        public Task<TResponse> PatchJsonAsync<TRequest, TResponse>(string path, TRequest value, JsonTypeInfo<TRequest> requestType,
            JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken = default) =>
            SendJsonAsync(HttpMethod.Patch, path, value, requestType ?? throw new ArgumentNullException(nameof(requestType)), responseType, cancellationToken);

        /// <summary>DELETEs <paramref name="path"/>.</summary>
        public async Task DeleteAsync(string path, CancellationToken cancellationToken = default)
        {
            using var request = new HttpRequestMessage(HttpMethod.Delete, ResolvePath(path));
            using HttpResponseMessage response = await SendAsync(request, cancellationToken).ConfigureAwait(false);
        }

        /// <summary>
        /// Walks every page of a topi list endpoint (<c>?page=N</c> with <c>pagination.has_more</c>), yielding the
        /// items of each page's <c>data</c> array. Pages are fetched one at a time, as the enumeration proceeds.
        /// </summary>
        /// <param name="path">The list endpoint, such as <c>v1/shipping-method</c>; it may carry its own query.</param>
        /// <param name="itemType">How to read one item of <c>data</c>.</param>
        /// <param name="firstPage">The first page's number: 0 for zero-indexed endpoints such as <c>/v1/shipping-method</c>, 1 for the others.</param>
        /// <param name="cancellationToken">Stops the walk.</param>
        /// <exception cref="ArgumentException">The path has a fragment or a <c>page</c> parameter of its own (at the call, before any request).</exception>
        /// <exception cref="TopiException">During the walk: a page is not a topi page, or the server answered a page it had answered before.</exception>
        public IAsyncEnumerable<T> GetAllPagesAsync<T>(string path, JsonTypeInfo<T> itemType, int firstPage = 0, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(itemType);
            ArgumentOutOfRangeException.ThrowIfNegative(firstPage);
            ArgumentException.ThrowIfNullOrWhiteSpace(path);
            // The page number is appended to the query: a fragment would swallow it, a page of the caller's would repeat.
            if (path.Contains('#') || TopiPlumbing.HasQueryParameter(path, "page"))
                throw new ArgumentException("The path must have neither a fragment nor a page parameter (pass firstPage instead).", nameof(path));
            return WalkPagesAsync(path, itemType, firstPage, cancellationToken);
        }

        private async IAsyncEnumerable<T> WalkPagesAsync<T>(string path, JsonTypeInfo<T> itemType, int firstPage,
            [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            string separator = path.Contains('?') ? "&page=" : "?page=";
            // Digests of the pages answered so far: a server that ignores the page parameter would otherwise be walked forever.
            var answered = new HashSet<string>(StringComparer.Ordinal);
            for (long page = firstPage; ; page++)
            {
                List<T> items;
                bool hasMore;
                string data;
                using (var request = new HttpRequestMessage(HttpMethod.Get, ResolvePath(path + separator + page.ToString(CultureInfo.InvariantCulture))))
                using (HttpResponseMessage response = await SendAsync(request, cancellationToken).ConfigureAwait(false))
                using (Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false))
                {
                    try
                    {
                        using JsonDocument document = await JsonDocument.ParseAsync(body, TopiProtocol.LenientDocument, cancellationToken).ConfigureAwait(false);
                        (items, hasMore, data) = TopiProtocol.ReadPage(document.RootElement, itemType, request);
                    }
                    catch (JsonException ex)
                    {
                        throw new TopiException("The response of " + TopiPlumbing.Describe(request) + " is not a topi page: " + TopiPlumbing.Sanitize(ex.Message), response.StatusCode, ex);
                    }
                    if (items.Count > 0 && !answered.Add(Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes(data)))))
                        throw new TopiException("The server answered " + TopiPlumbing.Describe(request) + " with a page it had answered before; it seems to ignore the page parameter.", response.StatusCode);
                }
                foreach (T item in items) yield return item;
                // An empty page that claims more would otherwise loop forever too.
                if (!hasMore || items.Count == 0) yield break;
            }
        }

        /// <summary>GETs and reads JSON with reflection-based serialization (snake_case names, as topi uses). Prefer the <see cref="JsonTypeInfo{T}"/> overload.</summary>
        [RequiresUnreferencedCode(TopiProtocol.ReflectionWarning), RequiresDynamicCode(TopiProtocol.ReflectionWarning)]
        public Task<T> GetAsync<T>(string path, CancellationToken cancellationToken = default) =>
            GetAsync(path, TopiProtocol.ReflectionTypeInfo<T>(), cancellationToken);

        /// <summary>POSTs and reads JSON with reflection-based serialization (snake_case names). Prefer the <see cref="JsonTypeInfo{T}"/> overload.</summary>
        [RequiresUnreferencedCode(TopiProtocol.ReflectionWarning), RequiresDynamicCode(TopiProtocol.ReflectionWarning)]
        public Task<TResponse> PostJsonAsync<TRequest, TResponse>(string path, TRequest value, CancellationToken cancellationToken = default) =>
            PostJsonAsync(path, value, TopiProtocol.ReflectionTypeInfo<TRequest>(), TopiProtocol.ReflectionTypeInfo<TResponse>(), cancellationToken);

        /// <summary>PUTs and reads JSON with reflection-based serialization (snake_case names). Prefer the <see cref="JsonTypeInfo{T}"/> overload.</summary>
        [RequiresUnreferencedCode(TopiProtocol.ReflectionWarning), RequiresDynamicCode(TopiProtocol.ReflectionWarning)]
        public Task<TResponse> PutJsonAsync<TRequest, TResponse>(string path, TRequest value, CancellationToken cancellationToken = default) =>
            PutJsonAsync(path, value, TopiProtocol.ReflectionTypeInfo<TRequest>(), TopiProtocol.ReflectionTypeInfo<TResponse>(), cancellationToken);

        /// <summary>PATCHes and reads JSON with reflection-based serialization (snake_case names). Prefer the <see cref="JsonTypeInfo{T}"/> overload.</summary>
        [RequiresUnreferencedCode(TopiProtocol.ReflectionWarning), RequiresDynamicCode(TopiProtocol.ReflectionWarning)]
        public Task<TResponse> PatchJsonAsync<TRequest, TResponse>(string path, TRequest value, CancellationToken cancellationToken = default) =>
            PatchJsonAsync(path, value, TopiProtocol.ReflectionTypeInfo<TRequest>(), TopiProtocol.ReflectionTypeInfo<TResponse>(), cancellationToken);

        /// <summary>Walks every page with reflection-based serialization (snake_case names). Prefer the <see cref="JsonTypeInfo{T}"/> overload.</summary>
        [RequiresUnreferencedCode(TopiProtocol.ReflectionWarning), RequiresDynamicCode(TopiProtocol.ReflectionWarning)]
        public IAsyncEnumerable<T> GetAllPagesAsync<T>(string path, int firstPage = 0, CancellationToken cancellationToken = default) =>
            GetAllPagesAsync(path, TopiProtocol.ReflectionTypeInfo<T>(), firstPage, cancellationToken);

        /// <summary>Releases the connection pool and the token provider.</summary>
        public void Dispose()
        {
            _disposed = true;
            HttpClient.Dispose();
            TokenProvider.Dispose();
            _ownedHandler?.Dispose();
        }

        private async Task<TResponse> SendJsonAsync<TRequest, TResponse>(HttpMethod method, string path, TRequest? value,
            JsonTypeInfo<TRequest>? requestType, JsonTypeInfo<TResponse> responseType, CancellationToken cancellationToken)
        {
            ArgumentNullException.ThrowIfNull(responseType);
            using var request = new HttpRequestMessage(method, ResolvePath(path));
            if (requestType is not null)
            {
                // Serialized to bytes up front: the body can then be replayed for the 401 retry without buffering.
                request.Content = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(value!, requestType));
                request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
            }
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            using HttpResponseMessage response = await SendAsync(request, cancellationToken).ConfigureAwait(false);
            using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                return await JsonSerializer.DeserializeAsync(body, responseType, cancellationToken).ConfigureAwait(false)
                    ?? throw new TopiException("The response of " + TopiPlumbing.Describe(request) + " is JSON null.", response.StatusCode);
            }
            catch (JsonException ex)
            {
                throw new TopiException("The response of " + TopiPlumbing.Describe(request) + " is not the expected JSON: " + TopiPlumbing.Sanitize(ex.Message), response.StatusCode, ex);
            }
        }

        private static Uri ResolvePath(string path)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(path);
            if (Uri.TryCreate(path, UriKind.Absolute, out Uri? absolute) && (absolute.Scheme == Uri.UriSchemeHttps || absolute.Scheme == Uri.UriSchemeHttp))
                return absolute;
            // Relative to the base address without a leading '/', so a base path such as a proxy prefix is kept;
            // "./" keeps a first segment with a colon ("items:search") from reading as a URI scheme.
            return new Uri("./" + path.TrimStart('/'), UriKind.Relative);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Private parsing and plumbing
    // ---------------------------------------------------------------------------------------

    partial class TopiTokenProvider
    {
        internal TopiOptions Options => _options;

        // The hit path of GetTokenAsync without the ValueTask, for the handler's fast path.
        internal bool TryGetFreshToken([NotNullWhen(true)] out TopiToken? token)
        {
            Entry entry = _entry;
            token = entry.Token;
            return entry.State == Fresh;
        }

        // What a message about a response must never show: the secret as a server may echo it, the token the
        // request carried, the current token and the one before it.
        internal string?[] Redactions(HttpRequestMessage? request)
        {
            var redactions = new string?[_secretForms.Length + 3];
            _secretForms.CopyTo(redactions, 0);
            redactions[^3] = request?.Headers.Authorization?.Parameter;
            redactions[^2] = _entry.Token?.AccessToken;
            redactions[^1] = Volatile.Read(ref _previousToken)?.AccessToken;
            return redactions;
        }
    }

    // topi's wire formats: the token response, goa error bodies, pages.
    internal static class TopiProtocol
    {
        internal const string ReflectionWarning = "Reflection-based JSON serialization may break under trimming or Native AOT; pass a JsonTypeInfo<T> from a JsonSerializerContext instead.";
        internal static readonly JsonDocumentOptions LenientDocument = new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 64 };
        private static readonly JsonReaderOptions LenientReader = new JsonReaderOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip, MaxDepth = 16 };
        private const double DefaultLifetimeSeconds = 7200; // topi's guide: "default to 2 hours"
        private static readonly SearchValues<char> NumericText = SearchValues.Create(" 0123456789+-.eE");

        // Reads a token response (any status). Tolerates trailing commas, unknown fields, token_type in any
        // case and expires_in as number or numeric string. Lifetime rule: missing → 7200 s; below 1 s (zero,
        // negative, tiny fractions) or not a number → rejected; fractions kept to the millisecond; above 24 h
        // (however large, even beyond double's range) → capped at 24 h, so a token is never trusted for longer than a day.
        internal static TopiToken ParseTokenResponse(HttpResponseMessage response, byte[] body, DateTimeOffset sentAtWall, TimeProvider time,
            IReadOnlyList<string> requestedScopes, string?[] redactions, out TimeSpan lifetime)
        {
            HttpStatusCode status = response.StatusCode;
            string? accessToken = null, tokenType = null, scope = null, error = null, errorDescription = null;
            double? expiresIn = null;
            bool expiresInInvalid = false, json = true;
            try
            {
                ReadOnlySpan<byte> utf8 = body.AsSpan();
                if (utf8.StartsWith("\uFEFF"u8)) utf8 = utf8[3..]; // a UTF-8 byte order mark
                var reader = new Utf8JsonReader(utf8, LenientReader);
                if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject) json = false;
                else
                {
                    while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                    {
                        if (reader.ValueTextEquals("access_token"u8)) accessToken = ReadString(ref reader);
                        else if (reader.ValueTextEquals("token_type"u8)) tokenType = ReadString(ref reader);
                        else if (reader.ValueTextEquals("scope"u8)) scope = ReadString(ref reader);
                        else if (reader.ValueTextEquals("error"u8)) error = ReadString(ref reader);
                        else if (reader.ValueTextEquals("error_description"u8)) errorDescription = ReadString(ref reader);
                        else if (reader.ValueTextEquals("expires_in"u8))
                        {
                            reader.Read();
                            // A value beyond double's range is an infinity (as number: .NET 9+; .NET 8 fails to parse
                            // it; as string: always), which the lifetime rule below caps or rejects by its sign.
                            if (reader.TokenType == JsonTokenType.Number)
                                expiresIn = reader.TryGetDouble(out double n) ? n : reader.ValueSpan[0] == (byte)'-' ? double.NegativeInfinity : double.PositiveInfinity;
                            // A numeric string is read as a number; the words NaN and Infinity are not.
                            else if (reader.TokenType == JsonTokenType.String && reader.GetString() is string text
                                && text.AsSpan().IndexOfAnyExcept(NumericText) < 0
                                && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double s)) expiresIn = s;
                            else if (reader.TokenType == JsonTokenType.Null) expiresIn = null;
                            else { expiresInInvalid = true; reader.Skip(); }
                        }
                        else { reader.Read(); reader.Skip(); }
                    }
                }
            }
            catch (JsonException) { json = false; }

            bool transient = IsTransientStatus(status);
            TimeSpan? retryAfter = transient ? TopiPlumbing.GetRetryAfter(response, time) : null;
            // Never in a message: the secret in any of its forms, the tokens held before, nor the token this very response carries.
            string?[] redact = new string?[redactions.Length + 1];
            redactions.CopyTo(redact, 0);
            redact[^1] = accessToken;
            string statusText = (int)status + " " + response.ReasonPhrase;
            if (error is not null || (json && (int)status >= 400))
            {
                string oauth = error is null ? "" : ": " + TopiPlumbing.Sanitize(error, redact) + (errorDescription is null ? "" : " (" + TopiPlumbing.Sanitize(errorDescription, redact) + ")");
                throw new TopiAuthenticationException("The token endpoint answered " + statusText + oauth + ".", status,
                    TopiPlumbing.Redact(error, redact), TopiPlumbing.Redact(errorDescription, redact)) { IsTransient = transient, RetryAfter = retryAfter };
            }
            if (!json || (int)status != 200)
            {
                // An HTML error page from a proxy, or anything else that is not the JSON we expect.
                // A 2xx body that mentions access_token (a form-encoded token response, say) may hold a token we cannot spot: withhold it.
                // A 2xx body is never quoted: whatever its form, it may carry a token we cannot recognise.
                string quoted = body.Length == 0 ? "(empty body)" : (int)status is >= 200 and < 300
                    ? "(not quoted: a successful response may hold a token; " + body.Length + " bytes of " + TopiPlumbing.Sanitize(response.Content.Headers.ContentType?.MediaType ?? "unknown type") + ")"
                    : TopiPlumbing.Excerpt(body, redact);
                throw new TopiAuthenticationException("The token endpoint answered " + statusText + " with a body that is not a JSON token response: "
                    + quoted, status) { IsTransient = transient, RetryAfter = retryAfter };
            }
            if (string.IsNullOrEmpty(accessToken) || !TopiPlumbing.IsVisibleAscii(accessToken))
                throw new TopiAuthenticationException("The token response has no usable access_token.", status);
            if (tokenType is not null && !string.Equals(tokenType, "Bearer", StringComparison.OrdinalIgnoreCase))
                throw new TopiAuthenticationException("The token response has token_type '" + TopiPlumbing.Sanitize(tokenType, redact) + "'; only Bearer is supported.", status);

            double seconds = expiresIn ?? DefaultLifetimeSeconds;
            if (expiresInInvalid || double.IsNaN(seconds) || seconds < 1)
                throw new TopiAuthenticationException("The token response has an unusable expires_in (it must be at least 1 second).", status);
            lifetime = TimeSpan.FromMilliseconds(Math.Floor(Math.Min(seconds, 86400) * 1000));
            IReadOnlyList<string> scopes = scope is null ? requestedScopes : SplitScopes(scope);
            return new TopiToken(accessToken, sentAtWall + lifetime, scopes);
        }

        // The granted scopes as a set, in the server's order (topi's own example lists one scope twice).
        internal static IReadOnlyList<string> SplitScopes(string scope)
        {
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var scopes = new List<string>();
            foreach (string s in scope.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                if (seen.Add(s)) scopes.Add(s);
            return scopes;
        }

        private static string? ReadString(ref Utf8JsonReader reader)
        {
            reader.Read();
            if (reader.TokenType == JsonTokenType.String) return reader.GetString();
            reader.Skip();
            return null;
        }

        internal static bool IsTransientStatus(HttpStatusCode status) =>
            (int)status is 408 or 429 or 500 or 502 or 503 or 504;

        // Whether an API response is worth retrying: 429, 502, 503, 504, or a goa error that says temporary.
        internal static async ValueTask<bool> IsRetryableAsync(HttpResponseMessage response, CancellationToken cancellationToken)
        {
            int status = (int)response.StatusCode;
            if (status is 429 or 502 or 503 or 504) return true;
            // Only a small body of known size is read, and it is buffered in place, so the caller still gets it whole.
            if (status < 400 || !IsGoaError(response) || response.Content.Headers.ContentLength is not (>= 0 and <= TopiPlumbing.MaxErrorBodyBytes)) return false;
            byte[] body = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
            return ReadGoaError(body)?.Temporary == true;
        }

        // The message quotes the body with `redact` removed; the properties keep the server's words, `redact` removed.
        internal static async Task<TopiApiException> CreateApiExceptionAsync(HttpRequestMessage request, HttpResponseMessage response,
            string?[] redact, CancellationToken cancellationToken)
        {
            byte[] body;
            try { body = await TopiPlumbing.ReadCappedAsync(response.Content, TopiPlumbing.MaxErrorBodyBytes, cancellationToken, throwWhenLarger: false).ConfigureAwait(false); }
            catch (Exception ex) when (ex is HttpRequestException or IOException) { body = Array.Empty<byte>(); }
            HttpStatusCode status = response.StatusCode;
            string prefix = TopiPlumbing.Describe(request) + " failed with " + (int)status + " " + response.ReasonPhrase;
            GoaError? goa = ReadGoaError(body);
            if (goa is not null)
            {
                return new TopiApiException(prefix + ": " + TopiPlumbing.Sanitize(goa.Name ?? "error", redact) + ": " + TopiPlumbing.Sanitize(goa.Message ?? "", redact)
                    + (goa.Id is null ? "" : " (id " + TopiPlumbing.Sanitize(goa.Id, redact) + ")"),
                    status, TopiPlumbing.Redact(goa.Name, redact), TopiPlumbing.Redact(goa.Id, redact), TopiPlumbing.Redact(goa.Message, redact),
                    goa.Temporary, goa.Timeout, goa.Fault)
                { IsTransient = goa.Temporary || IsTransientStatus(status) };
            }
            string? plain = ReadJsonString(body);
            if (plain is not null)
                return new TopiApiException(prefix + ": " + TopiPlumbing.Sanitize(plain, redact), status, errorMessage: TopiPlumbing.Redact(plain, redact)) { IsTransient = IsTransientStatus(status) };
            return new TopiApiException(prefix + (body.Length == 0 ? "." : ": " + TopiPlumbing.Excerpt(body, redact)), status) { IsTransient = IsTransientStatus(status) };
        }

        private static bool IsGoaError(HttpResponseMessage response)
        {
            string? media = response.Content.Headers.ContentType?.MediaType;
            return media is not null && (media.Equals("application/vnd.goa.error", StringComparison.OrdinalIgnoreCase)
                || media.Equals("application/json", StringComparison.OrdinalIgnoreCase));
        }

        private sealed record GoaError(string? Name, string? Id, string? Message, bool Temporary, bool Timeout, bool Fault);

        // A goa error body: an object with at least a name or a message.
        private static GoaError? ReadGoaError(byte[] body)
        {
            try
            {
                using JsonDocument document = JsonDocument.Parse(body, LenientDocument);
                JsonElement root = document.RootElement;
                if (root.ValueKind != JsonValueKind.Object) return null;
                string? name = StringProperty(root, "name"), message = StringProperty(root, "message");
                if (name is null && message is null) return null;
                return new GoaError(name, StringProperty(root, "id"), message,
                    BoolProperty(root, "temporary"), BoolProperty(root, "timeout"), BoolProperty(root, "fault"));
            }
            catch (JsonException) { return null; }
        }

        private static string? ReadJsonString(byte[] body)
        {
            try
            {
                using JsonDocument document = JsonDocument.Parse(body, LenientDocument);
                return document.RootElement.ValueKind == JsonValueKind.String ? document.RootElement.GetString() : null;
            }
            catch (JsonException) { return null; }
        }

        private static string? StringProperty(JsonElement o, string name) =>
            o.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

        private static bool BoolProperty(JsonElement o, string name) =>
            o.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.True;

        // A page's items, whether more follow, and the raw data array (to spot a page served twice).
        internal static (List<T> Items, bool HasMore, string Data) ReadPage<T>(JsonElement root, JsonTypeInfo<T> itemType, HttpRequestMessage request)
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("data", out JsonElement data) || data.ValueKind is not (JsonValueKind.Array or JsonValueKind.Null))
                throw new TopiException("The response of " + TopiPlumbing.Describe(request) + " is not a topi page (no data array).", HttpStatusCode.OK);
            var items = new List<T>(data.ValueKind == JsonValueKind.Array ? data.GetArrayLength() : 0);
            if (data.ValueKind == JsonValueKind.Array)
            {
                try
                {
                    foreach (JsonElement element in data.EnumerateArray()) items.Add(element.Deserialize(itemType)!);
                }
                catch (JsonException ex)
                {
                    throw new TopiException("An item of " + TopiPlumbing.Describe(request) + " is not the expected JSON: " + TopiPlumbing.Sanitize(ex.Message), HttpStatusCode.OK, ex);
                }
            }
            bool hasMore = root.TryGetProperty("pagination", out JsonElement pagination) && pagination.ValueKind == JsonValueKind.Object
                && pagination.TryGetProperty("has_more", out JsonElement more) && more.ValueKind == JsonValueKind.True;
            return (items, hasMore, data.GetRawText());
        }

        private static JsonSerializerOptions? s_reflectionOptions;

        // The one place that uses reflection-based JSON; only the overloads marked as such reach it.
        [RequiresUnreferencedCode(ReflectionWarning), RequiresDynamicCode(ReflectionWarning)]
        internal static JsonTypeInfo<T> ReflectionTypeInfo<T>()
        {
            s_reflectionOptions ??= new JsonSerializerOptions(JsonSerializerDefaults.Web)
            {
                PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
                DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
                TypeInfoResolver = new DefaultJsonTypeInfoResolver(),
            };
            return (JsonTypeInfo<T>)s_reflectionOptions.GetTypeInfo(typeof(T));
        }
    }

    // TopiTelemetry through the BCL's ActivitySource and Meter, both named "Topi". With no listener, each
    // instrument is a cheap no-op, and the cache's hit path touches none of them.
    internal static class TopiTelemetry
    {
        internal const string Name = "Topi";
        internal const string Version = "1.0.1";
        internal static readonly ActivitySource Source = new ActivitySource(Name, Version);
        private static readonly Meter Meter = new Meter(Name, Version);
        internal static readonly Counter<long> TokenRequests = Meter.CreateCounter<long>("topi.token.requests", "{request}", "Requests sent to the token endpoint.");
        internal static readonly Counter<long> CacheMisses = Meter.CreateCounter<long>("topi.token.cache_misses", "{miss}", "Callers that found no usable cached token and waited for one.");
        internal static readonly Counter<long> TokenFailures = Meter.CreateCounter<long>("topi.token.failures", "{failure}", "Token renewals that failed.");
        internal static readonly Counter<long> ApiRetries = Meter.CreateCounter<long>("topi.api.retries", "{retry}", "Seller API requests retried after a transient failure.");
        internal static readonly Histogram<double> TokenDuration = Meter.CreateHistogram<double>("topi.token.request.duration", "s", "Duration of successful token requests.");
    }

    internal static class TopiPlumbing
    {
        internal const int MaxTokenResponseBytes = 64 * 1024;
        internal const int MaxErrorBodyBytes = 64 * 1024;
        private const int MaxBufferedRequestBytes = 4 * 1024 * 1024;
        private const int ExcerptLength = 160;

        internal static SocketsHttpHandler CreateDefaultHandler() => new SocketsHttpHandler
        {
            // Recycle connections so DNS changes are seen; never follow redirects (the token request must not be redirected).
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.All,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };

        // The token request must never follow a redirect, and a caller's handler that would follow one cannot be
        // stopped per request: refuse it up front (SocketsHttpHandler and HttpClientHandler follow them by default).
        internal static HttpMessageHandler RequireNoAutoRedirect(HttpMessageHandler handler, string name)
        {
            for (HttpMessageHandler? h = handler; h is not null; h = (h as DelegatingHandler)?.InnerHandler)
                if (h is SocketsHttpHandler { AllowAutoRedirect: true } or HttpClientHandler { AllowAutoRedirect: true })
                    throw new ArgumentException("The handler follows redirects, and the token request must never be redirected: set AllowAutoRedirect = false.", name);
            return handler;
        }

        internal static Uri RequireSecureAbsolute(Uri? uri, string name)
        {
            if (uri is null) throw new ArgumentException(name + " is required.", name);
            if (!uri.IsAbsoluteUri) throw new ArgumentException(name + " must be an absolute URI.", name);
            bool https = uri.Scheme == Uri.UriSchemeHttps;
            bool loopbackHttp = uri.Scheme == Uri.UriSchemeHttp && (uri.IsLoopback || string.Equals(uri.Host, "localhost", StringComparison.OrdinalIgnoreCase));
            // Credentials and tokens travel only over HTTPS; plain HTTP is allowed on loopback for local fakes and tests.
            if (!https && !loopbackHttp) throw new ArgumentException(name + " must use HTTPS (HTTP is allowed only on loopback).", name);
            if (!string.IsNullOrEmpty(uri.UserInfo)) throw new ArgumentException(name + " must not contain user information.", name);
            if (uri.Fragment.Length > 0) throw new ArgumentException(name + " must not have a fragment.", name);
            return uri;
        }

        // Control characters (CR, LF, NUL ...) and Unicode line separators replaced, so server-chosen text cannot forge log lines.
        internal static string Printable(string value)
        {
            char[] chars = value.ToCharArray();
            for (int i = 0; i < chars.Length; i++) if (char.IsControl(chars[i]) || chars[i] is '\u2028' or '\u2029') chars[i] = '?';
            return new string(chars);
        }

        internal static bool HasControlCharacter(string value)
        {
            foreach (char c in value) if (char.IsControl(c)) return true;
            return false;
        }

        internal static bool IsValidUnicode(string value)
        {
            for (int i = 0; i < value.Length; i++)
            {
                if (char.IsHighSurrogate(value[i]) && i + 1 < value.Length && char.IsLowSurrogate(value[i + 1])) i++;
                else if (char.IsSurrogate(value[i])) return false;
            }
            return true;
        }

        internal static bool IsVisibleAscii(string value)
        {
            foreach (char c in value) if (c < '!' || c > '~') return false;
            return true;
        }

        // application/x-www-form-urlencoded: RFC 3986 percent-encoding of UTF-8, with space as '+'.
        // Whether the query of a path such as "v1/items?sort=name&page=2" has the parameter `name` (percent-decoded;
        // '&' or ';' between parameters).
        internal static bool HasQueryParameter(string path, string name)
        {
            int query = path.IndexOf('?');
            if (query < 0) return false;
            foreach (string parameter in path.Substring(query + 1).Split('&', ';'))
            {
                int equals = parameter.IndexOf('=');
                if (Uri.UnescapeDataString(equals < 0 ? parameter : parameter.Substring(0, equals)) == name) return true;
            }
            return false;
        }

        internal static string FormEncode(string value) => Uri.EscapeDataString(value).Replace("%20", "+", StringComparison.Ordinal);

        // The secret as a server may echo it: verbatim, form- or percent-encoded (in either hex case), in a JSON string
        // (as Excerpt rewrites JSON bodies, and with '/' escaped), base64 or base64url with or without padding, and
        // inside the Basic credentials.
        internal static string[] SecretForms(string secret, string basicCredentials)
        {
            string form = FormEncode(secret), escaped = Uri.EscapeDataString(secret), base64 = Convert.ToBase64String(Encoding.UTF8.GetBytes(secret));
            string json = secret.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal);
            return new[] { secret, form, LowerHexEscapes(form), escaped, LowerHexEscapes(escaped), json, json.Replace("/", "\\/", StringComparison.Ordinal),
                base64, base64.TrimEnd('='), base64.TrimEnd('=').Replace('+', '-').Replace('/', '_'), basicCredentials };

            static string LowerHexEscapes(string encoded)
            {
                char[] chars = encoded.ToCharArray();
                for (int i = 0; i + 2 < chars.Length; i++)
                    if (chars[i] == '%') { chars[i + 1] = char.ToLowerInvariant(chars[i + 1]); chars[i + 2] = char.ToLowerInvariant(chars[i + 2]); }
                return new string(chars);
            }
        }

        internal static bool IsIdempotent(HttpMethod method) =>
            method == HttpMethod.Get || method == HttpMethod.Head || method == HttpMethod.Put || method == HttpMethod.Delete || method == HttpMethod.Options;

        // Makes a request body safe to send twice. Byte-array-like and JSON bodies replay as they are; other
        // bodies of known, moderate length are buffered; a stream of unknown or large length cannot be replayed.
        internal static async ValueTask<bool> MakeReplayableAsync(HttpContent? content, CancellationToken cancellationToken)
        {
            if (content is null or ByteArrayContent or ReadOnlyMemoryContent or System.Net.Http.Json.JsonContent) return true;
            if (content.Headers.ContentLength is long length && length <= MaxBufferedRequestBytes)
            {
#if NET9_0_OR_GREATER
                await content.LoadIntoBufferAsync(MaxBufferedRequestBytes, cancellationToken).ConfigureAwait(false);
#else
                await content.LoadIntoBufferAsync(MaxBufferedRequestBytes).ConfigureAwait(false);
#endif
                return true;
            }
            return false;
        }

        // Reads at most `cap` bytes; a larger body is an error (token responses) or cut (error excerpts).
        internal static async Task<byte[]> ReadCappedAsync(HttpContent content, int cap, CancellationToken cancellationToken, bool throwWhenLarger = true)
        {
            if (throwWhenLarger && content.Headers.ContentLength > cap) throw TooLarge(cap);
            using Stream stream = await content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
            byte[] buffer = new byte[Math.Min(cap + 1, (int)Math.Min(content.Headers.ContentLength ?? 4096, cap) + 1)];
            int length = 0;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length > cap) { if (throwWhenLarger) throw TooLarge(cap); break; }
                    Array.Resize(ref buffer, Math.Min(cap + 1, buffer.Length * 2));
                }
                int read = await stream.ReadAsync(buffer.AsMemory(length), cancellationToken).ConfigureAwait(false);
                if (read == 0) break;
                length += read;
            }
            if (length > cap) length = cap;
            return length == buffer.Length ? buffer : buffer.AsSpan(0, length).ToArray();
        }

        private static TopiAuthenticationException TooLarge(int cap) =>
            new TopiAuthenticationException("The token endpoint's response is larger than " + cap / 1024 + " KiB; refusing to read it.");

        // Retry-After as delta-seconds or HTTP-date; null when absent or in the past.
        internal static TimeSpan? GetRetryAfter(HttpResponseMessage response, TimeProvider time)
        {
            RetryConditionHeaderValue? header = response.Headers.RetryAfter;
            if (header?.Delta is TimeSpan delta) return delta > TimeSpan.Zero ? delta : null;
            if (header?.Date is DateTimeOffset date)
            {
                TimeSpan wait = date - time.GetUtcNow();
                return wait > TimeSpan.Zero ? wait : null;
            }
            return null;
        }

        // The wait before a retry: full-jitter backoff, or the server's Retry-After if longer; capped by MaxRetryDelay.
        internal static TimeSpan RetryDelay(TopiOptions options, int attempt, TimeSpan? retryAfter) =>
            Min(options.MaxRetryDelay, Max(retryAfter ?? TimeSpan.Zero, Backoff(options.RetryBaseDelay, options.MaxRetryDelay, attempt)));

        // Full jitter: a random delay below min(cap, base * 2^(attempt-1)).
        internal static TimeSpan Backoff(TimeSpan baseDelay, TimeSpan cap, int attempt)
        {
            double ceiling = Math.Min(cap.TotalMilliseconds, baseDelay.TotalMilliseconds * Math.Pow(2, Math.Min(attempt - 1, 20)));
            return TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * ceiling);
        }

        internal static long ToTimestampTicks(TimeSpan span, TimeProvider time) => (long)(span.TotalSeconds * time.TimestampFrequency);

        internal static TimeSpan FromTimestampTicks(long ticks, TimeProvider time) => TimeSpan.FromSeconds((double)ticks / time.TimestampFrequency);

        internal static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;

        internal static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

        // "GET /v1/shipping-method": method and path, never the query or a host's user info.
        internal static string Describe(HttpRequestMessage request)
        {
            Uri? uri = request.RequestUri;
            string path = uri is null ? "" : uri.IsAbsoluteUri ? uri.AbsolutePath : uri.OriginalString.Split('?')[0];
            return request.Method.Method + " " + Sanitize(path);
        }

        // A short, printable excerpt of a body that cannot be parsed, for messages.
        internal static string Excerpt(byte[] body, params string?[] secrets)
        {
            if (body.Length == 0) return "(empty body)";
            // NUL bytes mean binary or UTF-16, where neither redaction nor the eye would work.
            if (body.AsSpan().IndexOf((byte)0) >= 0) return "(binary body, " + body.Length + " bytes, not quoted)";
            // Redaction sees the whole (capped) body before it is cut, so a secret is never cut in half. A JSON body is
            // rewritten with minimal escaping first, so that a secret the server's encoder escaped (\u0026, \u002B, \/ ...)
            // reads as itself.
            return "\"" + Sanitize(MinimallyEscapedJson(body) ?? Encoding.UTF8.GetString(body), secrets) + "\"";
        }

        // A JSON body written again with only '"', '\' and control characters escaped, or null if it is not JSON.
        private static string? MinimallyEscapedJson(byte[] body)
        {
            try
            {
                using JsonDocument document = JsonDocument.Parse(body, TopiProtocol.LenientDocument);
                var buffer = new ArrayBufferWriter<byte>(body.Length);
                using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                    document.WriteTo(writer);
                return Encoding.UTF8.GetString(buffer.WrittenSpan);
            }
            catch (JsonException) { return null; }
        }

        // Makes text safe for a message: Redact, then control characters become spaces, runs of whitespace
        // collapse, and the result is cut to a short length.
        internal static string Sanitize(string text, params string?[] secrets)
        {
            text = Redact(text, secrets);
            var sb = new StringBuilder(Math.Min(text.Length, ExcerptLength + 16));
            foreach (char ch in text)
            {
                if (sb.Length >= ExcerptLength) break;
                char c = char.IsControl(ch) || char.IsWhiteSpace(ch) ? ' ' : ch;
                if (c != ' ' || (sb.Length > 0 && sb[^1] != ' ')) sb.Append(c);
            }
            if (sb.Length >= ExcerptLength) { sb.Length = ExcerptLength; sb.Append('…'); }
            return sb.ToString().Trim();
        }

        // Removes what must never be shown and changes nothing else: the `secrets`, and anything that looks like a
        // token (a run of 40 or more base64url/JWT characters; a UUID is 36). Error properties keep the server's
        // words this way; messages go on through Sanitize.
        [return: NotNullIfNotNull(nameof(text))]
        internal static string? Redact(string? text, string?[] secrets)
        {
            if (text is null) return null;
            foreach (string? secret in secrets)
                if (!string.IsNullOrEmpty(secret)) text = text.Replace(secret, "[redacted]", StringComparison.Ordinal);
            var sb = new StringBuilder(text.Length);
            int i = 0;
            while (i < text.Length)
            {
                int run = i;
                while (run < text.Length && IsTokenChar(text[run])) run++;
                if (run - i >= 40) sb.Append("[redacted]");
                else if (run > i) sb.Append(text, i, run - i);
                else { sb.Append(text[i]); run++; }
                i = run;
            }
            return sb.ToString();
        }

        private static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '+' or '/' or '=' or '~';
    }
}
