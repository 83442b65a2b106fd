// In-process fakes shared by the benchmarks and the plain modes: a token endpoint (also serving MSAL's
// OIDC discovery), a terminal handler with a cached response, the lower-bound and hand-written caches,
// the token caches as contenders of the plain modes, and a minimal keep-alive HTTP/1.1 server on 127.0.0.1.

using System;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Threading;
using System.Threading.Tasks;
using Microsoft.Identity.Client;

namespace Topi.Benchmarks
{
    internal static class Bench
    {
        internal const string ClientId = "bench-client";
        internal const string ClientSecret = "bench-secret";
        internal const string Authority = "https://identity.example.test/";
        internal static readonly Uri TokenUri = new Uri("https://identity.example.test/oauth2/token");
        internal static readonly Uri ApiUri = new Uri("https://api.example.test/");
        internal static readonly Uri ApiRequestUri = new Uri("https://api.example.test/v1/shipping-method");
        internal static readonly string[] MsalScopes = { "client" };

        // A JWT-shaped token (header.payload.signature, base64url), about the size topi issues.
        internal const string AccessToken =
            "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImJlbmNoLWtleS0xIn0." +
            "eyJpc3MiOiJodHRwczovL2lkZW50aXR5LmV4YW1wbGUudGVzdC8iLCJzdWIiOiJiZW5jaC1jbGllbnQiLCJhdWQiOiJzZWxsZXItYXBpIiwic2NvcGUiOiJjbGllbnQiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0." +
            "c2lnbmF0dXJlLW9mLXRoZS1iZW5jaG1hcmstdG9rZW4tbm90LXZlcmlmaWVkLWJ5LWFueW9uZS1oZXJlLWp1c3QtcGFkZGluZw";

        internal static string TokenJson(int expiresIn) =>
            "{\"access_token\":\"" + AccessToken + "\",\"token_type\":\"Bearer\",\"expires_in\":" + expiresIn + ",\"scope\":\"client\"}";

        internal static TopiOptions Options(Uri? tokenUri = null, Uri? apiUri = null) => new TopiOptions
        {
            ClientId = ClientId,
            ClientSecret = ClientSecret,
            Environment = new TopiEnvironment("bench", tokenUri ?? TokenUri, apiUri ?? ApiUri),
        };

        internal static TopiTokenProvider WarmProvider(TokenEndpointHandler endpoint)
        {
            var provider = new TopiTokenProvider(Options(), endpoint);
            provider.GetTokenAsync().AsTask().GetAwaiter().GetResult();
            return provider;
        }

        internal static IConfidentialClientApplication Msal(TokenEndpointHandler endpoint) =>
            ConfidentialClientApplicationBuilder.Create(ClientId)
                .WithClientSecret(ClientSecret)
                .WithOidcAuthority(Authority)
                .WithHttpClientFactory(new MsalHttpClientFactory(new HttpClient(endpoint, disposeHandler: false)))
                .Build();

        internal static IConfidentialClientApplication WarmMsal(TokenEndpointHandler endpoint)
        {
            IConfidentialClientApplication app = Msal(endpoint);
            app.AcquireTokenForClient(MsalScopes).ExecuteAsync().GetAwaiter().GetResult();
            // The second call must come from MSAL's in-memory cache.
            int before = endpoint.TokenRequests;
            AuthenticationResult cached = app.AcquireTokenForClient(MsalScopes).ExecuteAsync().GetAwaiter().GetResult();
            if (endpoint.TokenRequests != before || cached.AuthenticationResultMetadata.TokenSource != TokenSource.Cache)
                throw new InvalidOperationException("MSAL did not serve the second call from its cache.");
            return app;
        }

        // Listeners for other names than "Topi": the library's instruments must stay disabled.
        internal static IDisposable AttachForeignListeners()
        {
            var activities = new ActivityListener
            {
                ShouldListenTo = source => source.Name == "Some.Other.Library",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            };
            ActivitySource.AddActivityListener(activities);
            var meters = new MeterListener { InstrumentPublished = (instrument, l) => { if (instrument.Meter.Name == "Some.Other.Library") l.EnableMeasurementEvents(instrument); } };
            meters.Start();
            return new Both(activities, meters);
        }

        // A listener for "Topi" itself, as an OpenTelemetry setup that records the library's traces would attach.
        internal static IDisposable AttachTopiListener()
        {
            var activities = new ActivityListener
            {
                ShouldListenTo = source => source.Name == "Topi",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            };
            ActivitySource.AddActivityListener(activities);
            return activities;
        }

        private sealed class Both(IDisposable a, IDisposable b) : IDisposable
        {
            public void Dispose() { a.Dispose(); b.Dispose(); }
        }
    }

    /// <summary>
    /// The identity server, in process: POST to the token endpoint answers token JSON (after an optional
    /// delay), GET of the OIDC discovery document answers it (MSAL reads it first). Counts both.
    /// </summary>
    internal sealed class TokenEndpointHandler : HttpMessageHandler
    {
        private readonly TimeSpan _delay;
        private readonly byte[] _tokenBody;
        private static readonly byte[] s_discovery = Encoding.UTF8.GetBytes(
            "{\"issuer\":\"" + Bench.Authority + "\",\"token_endpoint\":\"" + Bench.TokenUri + "\"," +
            "\"authorization_endpoint\":\"" + Bench.Authority + "oauth2/authorize\",\"jwks_uri\":\"" + Bench.Authority + "jwks\"," +
            "\"response_types_supported\":[\"code\",\"token\"],\"grant_types_supported\":[\"client_credentials\"]," +
            "\"token_endpoint_auth_methods_supported\":[\"client_secret_basic\",\"client_secret_post\"]}");

        private int _tokenRequests, _discoveryRequests;

        internal TokenEndpointHandler(TimeSpan delay = default, int expiresIn = 7200)
        {
            _delay = delay;
            _tokenBody = Encoding.UTF8.GetBytes(Bench.TokenJson(expiresIn));
        }

        private long _lastAnsweredAt;

        internal int TokenRequests => Volatile.Read(ref _tokenRequests);
        internal int DiscoveryRequests => Volatile.Read(ref _discoveryRequests);

        /// <summary>Stopwatch timestamp at which the latest token response was handed back.</summary>
        internal long LastAnsweredAt => Volatile.Read(ref _lastAnsweredAt);

        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            string path = request.RequestUri!.AbsolutePath;
            if (request.Method == HttpMethod.Get && path.EndsWith("/.well-known/openid-configuration", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _discoveryRequests);
                return Json(s_discovery, request);
            }
            if (request.Method == HttpMethod.Post && path == Bench.TokenUri.AbsolutePath)
            {
                Interlocked.Increment(ref _tokenRequests);
                if (request.Content is not null) await request.Content.LoadIntoBufferAsync(cancellationToken).ConfigureAwait(false);
                if (_delay > TimeSpan.Zero) await Task.Delay(_delay, cancellationToken).ConfigureAwait(false);
                HttpResponseMessage response = Json(_tokenBody, request);
                Volatile.Write(ref _lastAnsweredAt, Stopwatch.GetTimestamp());
                return response;
            }
            return new HttpResponseMessage(HttpStatusCode.NotFound) { RequestMessage = request };
        }

        private static HttpResponseMessage Json(byte[] body, HttpRequestMessage request)
        {
            var content = new ByteArrayContent(body);
            content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
            return new HttpResponseMessage(HttpStatusCode.OK) { Content = content, RequestMessage = request };
        }
    }

    internal sealed class MsalHttpClientFactory(HttpClient client) : IMsalHttpClientFactory
    {
        public HttpClient GetHttpClient() => client;
    }

    /// <summary>The API in memory: every request gets the same completed Task with a 200 response.</summary>
    internal sealed class CachedResponseHandler : HttpMessageHandler
    {
        private readonly Task<HttpResponseMessage> _response = Task.FromResult(new HttpResponseMessage(HttpStatusCode.OK));

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) => _response;
    }

    /// <summary>The comparison for the bearer handler: a DelegatingHandler that sets one constant header object.</summary>
    internal sealed class ConstantHeaderHandler(AuthenticationHeaderValue header, HttpMessageHandler inner) : DelegatingHandler(inner)
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            request.Headers.Authorization = header;
            return base.SendAsync(request, cancellationToken);
        }
    }

    /// <summary>
    /// A yardstick for (3): about the least a correct bearer handler can do beyond a constant header. It checks that the
    /// request goes to the API origin (a token must never reach another host), reads the current header from a
    /// cache slot another thread may replace (one volatile read), and looks at the status (a 401 must renew the
    /// token). No telemetry, no retries, no expiry; it never renews, so it is a measuring stick, not a client.
    /// With <paramref name="checkOrigin"/> false it skips the origin check (unsafe), to show what that check costs.
    /// </summary>
    internal sealed class MinimalBearerHandler(Uri apiBase, AuthenticationHeaderValue header, HttpMessageHandler inner, bool checkOrigin = true) : DelegatingHandler(inner)
    {
        private readonly string _originPrefix = apiBase.GetLeftPart(UriPartial.Authority) + "/";
        private volatile AuthenticationHeaderValue _current = header; // a cache slot, read as a real cache would read it

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Uri? uri = request.RequestUri;
            if (checkOrigin && (uri is null || !uri.OriginalString.AsSpan().StartsWith(_originPrefix)))
                return base.SendAsync(request, cancellationToken);
            request.Headers.Authorization = _current;
            Task<HttpResponseMessage> sent = base.SendAsync(request, cancellationToken);
            if (sent.IsCompletedSuccessfully && sent.Result.StatusCode != HttpStatusCode.Unauthorized) return sent;
            throw new InvalidOperationException("The minimal handler does not renew tokens.");
        }
    }

    /// <summary>Client-credentials request and JSON parsing, as an application that fetches its own token writes it.</summary>
    internal sealed class TokenFetcher(HttpMessageHandler endpoint)
    {
        private readonly HttpClient _http = new HttpClient(endpoint, disposeHandler: false);

        internal async Task<(string Token, TimeSpan Lifetime)> FetchAsync(CancellationToken cancellationToken)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, Bench.TokenUri)
            {
                Content = new FormUrlEncodedContent(new[]
                {
                    new System.Collections.Generic.KeyValuePair<string, string>("grant_type", "client_credentials"),
                    new System.Collections.Generic.KeyValuePair<string, string>("scope", "client"),
                }),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes(Bench.ClientId + ":" + Bench.ClientSecret)));
            using HttpResponseMessage response = await _http.SendAsync(request, cancellationToken).ConfigureAwait(false);
            response.EnsureSuccessStatusCode();
            using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false));
            return (json.RootElement.GetProperty("access_token").GetString()!,
                TimeSpan.FromSeconds(json.RootElement.GetProperty("expires_in").GetDouble()));
        }

        // The same skew rule as Topi: 60 s before expiry, at most half the lifetime.
        internal static TimeSpan Usable(TimeSpan lifetime) => lifetime - TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(60).Ticks, lifetime.Ticks / 2));
    }

    /// <summary>
    /// The lower bound: a volatile field holding an immutable (token, expiry) record, checked against
    /// Environment.TickCount64. About the cheapest correct cache there is (the miss path is not measured).
    /// </summary>
    internal sealed class LowerBoundCache(TokenFetcher fetcher)
    {
        private sealed record Cached(string Token, long ExpiresAtMs);

        private volatile Cached? _cached;

        public ValueTask<string> GetTokenAsync(CancellationToken cancellationToken = default)
        {
            Cached? cached = _cached;
            if (cached is not null && Environment.TickCount64 < cached.ExpiresAtMs) return new ValueTask<string>(cached.Token);
            return new ValueTask<string>(FetchAsync(cancellationToken));
        }

        private async Task<string> FetchAsync(CancellationToken cancellationToken)
        {
            long start = Environment.TickCount64;
            (string token, TimeSpan lifetime) = await fetcher.FetchAsync(cancellationToken).ConfigureAwait(false);
            _cached = new Cached(token, start + (long)TokenFetcher.Usable(lifetime).TotalMilliseconds);
            return token;
        }
    }

    /// <summary>The cache most applications write by hand: SemaphoreSlim.WaitAsync on every call plus a DateTime.UtcNow comparison.</summary>
    internal sealed class HandWrittenCache(TokenFetcher fetcher)
    {
        private readonly SemaphoreSlim _lock = new SemaphoreSlim(1, 1);
        private string? _token;
        private DateTime _expiresAtUtc;

        public async Task<string> GetTokenAsync(CancellationToken cancellationToken = default)
        {
            await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                if (_token is null || DateTime.UtcNow >= _expiresAtUtc)
                {
                    DateTime start = DateTime.UtcNow;
                    (string token, TimeSpan lifetime) = await fetcher.FetchAsync(cancellationToken).ConfigureAwait(false);
                    _token = token;
                    _expiresAtUtc = start + TokenFetcher.Usable(lifetime);
                }
                return _token;
            }
            finally
            {
                _lock.Release();
            }
        }
    }

    /// <summary>
    /// A token cache under test in the plain modes, made anew on a token endpoint for each run. A renewal worker asks
    /// with <see cref="Call"/> (blocking only when the call did not complete synchronously); a stampede caller with
    /// <see cref="CallAsync"/> (awaiting, then stamping the time it got the token).
    /// </summary>
    internal abstract class TokenContender
    {
        internal abstract string Name { get; }
        internal abstract void Create(TokenEndpointHandler endpoint);
        // Returns true when the call completed synchronously; otherwise it waited (blocking this worker thread).
        internal abstract bool Call(out int length);
        // Awaits a token, then sets done[index] to the Stopwatch timestamp at which it came.
        internal abstract Task CallAsync(long[] done, int index);
        internal virtual void Release() { }
    }

    internal sealed class TopiContender : TokenContender
    {
        private TopiTokenProvider _p = null!;
        internal override string Name => "Topi";
        internal override void Create(TokenEndpointHandler endpoint) => _p = new TopiTokenProvider(Bench.Options(), endpoint);
        internal override bool Call(out int length)
        {
            ValueTask<TopiToken> pending = _p.GetTokenAsync();
            if (pending.IsCompletedSuccessfully) { length = pending.Result.AccessToken.Length; return true; }
            length = pending.AsTask().GetAwaiter().GetResult().AccessToken.Length;
            return false;
        }
        internal override async Task CallAsync(long[] done, int index)
        {
            TopiToken token = await _p.GetTokenAsync().ConfigureAwait(false);
            done[index] = Stopwatch.GetTimestamp();
            if (token.AccessToken.Length == 0) throw new InvalidOperationException();
        }
        internal override void Release() => _p.Dispose();
    }

    internal sealed class HandWrittenContender : TokenContender
    {
        private HandWrittenCache _c = null!;
        internal override string Name => "Hand-written (SemaphoreSlim)";
        internal override void Create(TokenEndpointHandler endpoint) => _c = new HandWrittenCache(new TokenFetcher(endpoint));
        internal override bool Call(out int length)
        {
            Task<string> pending = _c.GetTokenAsync();
            if (pending.IsCompletedSuccessfully) { length = pending.Result.Length; return true; }
            length = pending.GetAwaiter().GetResult().Length;
            return false;
        }
        internal override async Task CallAsync(long[] done, int index)
        {
            string token = await _c.GetTokenAsync().ConfigureAwait(false);
            done[index] = Stopwatch.GetTimestamp();
            if (token.Length == 0) throw new InvalidOperationException();
        }
    }

    internal sealed class MsalContender : TokenContender
    {
        private IConfidentialClientApplication _app = null!;
        internal override string Name => "MSAL.NET 4.92.0";
        internal override void Create(TokenEndpointHandler endpoint) => _app = Bench.Msal(endpoint);
        internal override bool Call(out int length)
        {
            Task<AuthenticationResult> pending = _app.AcquireTokenForClient(Bench.MsalScopes).ExecuteAsync();
            if (pending.IsCompletedSuccessfully) { length = pending.Result.AccessToken.Length; return true; }
            length = pending.GetAwaiter().GetResult().AccessToken.Length;
            return false;
        }
        internal override async Task CallAsync(long[] done, int index)
        {
            AuthenticationResult result = await _app.AcquireTokenForClient(Bench.MsalScopes).ExecuteAsync().ConfigureAwait(false);
            done[index] = Stopwatch.GetTimestamp();
            if (result.AccessToken.Length == 0) throw new InvalidOperationException();
        }
    }

    /// <summary>
    /// A minimal HTTP/1.1 keep-alive server on 127.0.0.1: POST /oauth2/token answers token JSON, anything else
    /// a fixed 200 with a small JSON body. Raw sockets, no parsing beyond the header end and Content-Length.
    /// </summary>
    internal sealed class LoopbackServer : IDisposable
    {
        private readonly Socket _listener;
        private readonly CancellationTokenSource _stop = new CancellationTokenSource();
        private readonly byte[] _apiResponse, _tokenResponse;
        private int _tokenRequests, _apiRequests;

        internal LoopbackServer()
        {
            _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
            _listener.Listen(128);
            int port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
            BaseUri = new Uri("http://127.0.0.1:" + port + "/");
            _apiResponse = Response("{\"data\":[],\"pagination\":{\"has_more\":false}}");
            _tokenResponse = Response(Bench.TokenJson(7200));
            _ = AcceptLoopAsync();
        }

        internal Uri BaseUri { get; }
        internal Uri TokenUri => new Uri(BaseUri, "oauth2/token");
        internal int TokenRequests => Volatile.Read(ref _tokenRequests);
        internal int ApiRequests => Volatile.Read(ref _apiRequests);

        private static byte[] Response(string json)
        {
            byte[] body = Encoding.UTF8.GetBytes(json);
            byte[] head = Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + body.Length + "\r\n\r\n");
            byte[] all = new byte[head.Length + body.Length];
            head.CopyTo(all, 0);
            body.CopyTo(all, head.Length);
            return all;
        }

        private async Task AcceptLoopAsync()
        {
            try
            {
                while (!_stop.IsCancellationRequested)
                {
                    Socket client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false);
                    client.NoDelay = true;
                    _ = ServeAsync(client);
                }
            }
            catch (OperationCanceledException) { }
            catch (ObjectDisposedException) { }
            catch (SocketException) { }
        }

        private async Task ServeAsync(Socket client)
        {
            byte[] buffer = new byte[16 * 1024];
            int filled = 0;
            try
            {
                while (true)
                {
                    int headerEnd;
                    while ((headerEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                    {
                        if (filled == buffer.Length) return; // headers too large for this fake
                        int read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stop.Token).ConfigureAwait(false);
                        if (read == 0) return;
                        filled += read;
                    }
                    int bodyStart = headerEnd + 4;
                    ReadOnlySpan<byte> head = buffer.AsSpan(0, headerEnd);
                    bool isPost = head.StartsWith("POST "u8);
                    int contentLength = ContentLength(head);
                    while (filled < bodyStart + contentLength)
                    {
                        if (bodyStart + contentLength > buffer.Length) return;
                        int read = await client.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stop.Token).ConfigureAwait(false);
                        if (read == 0) return;
                        filled += read;
                    }
                    byte[] response;
                    if (isPost) { Interlocked.Increment(ref _tokenRequests); response = _tokenResponse; }
                    else { Interlocked.Increment(ref _apiRequests); response = _apiResponse; }
                    int consumed = bodyStart + contentLength;
                    Buffer.BlockCopy(buffer, consumed, buffer, 0, filled - consumed);
                    filled -= consumed;
                    await client.SendAsync(response, SocketFlags.None, _stop.Token).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) { }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
            finally
            {
                client.Dispose();
            }
        }

        private static int ContentLength(ReadOnlySpan<byte> head)
        {
            ReadOnlySpan<byte> name = "\r\ncontent-length:"u8;
            for (int i = 0; i + name.Length <= head.Length; i++)
            {
                if (!head.Slice(i, name.Length).SequenceEqual(name) && !EqualsIgnoreCase(head.Slice(i, name.Length), name)) continue;
                int value = 0;
                for (int j = i + name.Length; j < head.Length && head[j] != '\r'; j++)
                    if (head[j] >= '0' && head[j] <= '9') value = value * 10 + (head[j] - '0');
                return value;
            }
            return 0;
        }

        private static bool EqualsIgnoreCase(ReadOnlySpan<byte> a, ReadOnlySpan<byte> lower)
        {
            for (int i = 0; i < a.Length; i++)
            {
                int c = a[i];
                if (c >= 'A' && c <= 'Z') c += 32;
                if (c != lower[i]) return false;
            }
            return true;
        }

        public void Dispose()
        {
            _stop.Cancel();
            _listener.Dispose();
        }
    }

    /// <summary>
    /// A second thread for the two-core measurements. It blocks while idle (so it takes nothing from a 1-thread
    /// measurement), and for each run it wakes, reports ready, and starts the moment the benchmark thread does.
    /// </summary>
    internal sealed class PartnerThread : IDisposable
    {
        private readonly Thread _thread;
        private readonly SemaphoreSlim _wake = new SemaphoreSlim(0);
        private Func<int>? _work;
        private volatile int _ready, _go, _finished; // generations
        private volatile bool _stop;
        private int _generation, _result;

        internal PartnerThread()
        {
            _thread = new Thread(Loop) { IsBackground = true, Name = "bench-partner" };
            _thread.Start();
        }

        /// <summary>Runs <paramref name="work"/> here and on the partner at the same time; returns when both are done.</summary>
        internal int RunTogether(Func<int> work) => RunTogether(work, out _);

        /// <summary>
        /// Runs <paramref name="work"/> here and <paramref name="partnerWork"/> on the partner at the same time;
        /// <paramref name="elapsed"/> (Stopwatch ticks) runs from the common start to the end of both, without the partner's wake-up.
        /// </summary>
        internal int RunTogether(Func<int> work, out long elapsed, Func<int>? partnerWork = null)
        {
            int generation = ++_generation;
            _work = partnerWork ?? work;
            _wake.Release(); // a full fence: the partner reads _work after it
            var spin = new SpinWait();
            while (_ready != generation) spin.SpinOnce(sleep1Threshold: -1);
            long start = Stopwatch.GetTimestamp();
            _go = generation;
            int mine = work();
            spin = default;
            while (_finished != generation) spin.SpinOnce(sleep1Threshold: -1);
            elapsed = Stopwatch.GetTimestamp() - start;
            return mine + _result; // _result was written before _finished
        }

        private void Loop()
        {
            for (int generation = 1; ; generation++)
            {
                _wake.Wait();
                if (_stop) return;
                _ready = generation;
                var spin = new SpinWait();
                while (_go != generation) spin.SpinOnce(sleep1Threshold: -1);
                _result = _work!();
                _finished = generation;
            }
        }

        public void Dispose()
        {
            _stop = true;
            _wake.Release();
            _thread.Join();
            _wake.Dispose();
        }
    }
}
