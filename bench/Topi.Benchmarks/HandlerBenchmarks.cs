// (3) Bearer handler overhead in memory and (4) over loopback HTTP.

using System;
using System.Net;
using System.Net.Http;
using System.Net.Http.Headers;
using System.Threading;
using System.Threading.Tasks;
using BenchmarkDotNet.Attributes;

namespace Topi.Benchmarks
{
    /// <summary>
    /// (3) A GET on the API origin through an HttpMessageInvoker to a terminal handler that returns a cached,
    /// completed Task with a 200: TopiAuthenticationHandler versus a DelegatingHandler that sets a constant header.
    /// </summary>
    [MemoryDiagnoser]
    public class HandlerInMemory
    {
        private TokenEndpointHandler _endpoint = null!;
        private TopiTokenProvider _provider = null!;
        private HttpMessageInvoker _constant = null!, _topi = null!;
        private IDisposable? _listeners;

        [GlobalSetup]
        public void Setup()
        {
            _endpoint = new TokenEndpointHandler();
            _provider = Bench.WarmProvider(_endpoint);
            var header = new AuthenticationHeaderValue("Bearer", Bench.AccessToken);
            _constant = new HttpMessageInvoker(new ConstantHeaderHandler(header, new CachedResponseHandler()), disposeHandler: true);
            _topi = new HttpMessageInvoker(new TopiAuthenticationHandler(_provider, new CachedResponseHandler()), disposeHandler: true);
            // Both must attach the header and get the 200.
            Check(_constant);
            Check(_topi);
        }

        [GlobalSetup(Target = nameof(Topi_ForeignListener))]
        public void SetupWithForeignListener()
        {
            _listeners = Bench.AttachForeignListeners();
            Setup();
        }

        [GlobalSetup(Target = nameof(Topi_TopiListener))]
        public void SetupWithTopiListener()
        {
            _listeners = Bench.AttachTopiListener();
            Setup();
        }

        [GlobalCleanup]
        public void Cleanup()
        {
            if (_endpoint.TokenRequests != 1) throw new InvalidOperationException("Expected exactly one token request, got " + _endpoint.TokenRequests + ".");
            _constant.Dispose();
            _topi.Dispose();
            _provider.Dispose();
            _listeners?.Dispose();
        }

        private static void Check(HttpMessageInvoker invoker)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, Bench.ApiRequestUri);
            HttpResponseMessage response = invoker.SendAsync(request, CancellationToken.None).GetAwaiter().GetResult();
            if (response.StatusCode != HttpStatusCode.OK || request.Headers.Authorization?.Parameter != Bench.AccessToken)
                throw new InvalidOperationException("The handler did not attach the bearer token.");
        }

        [Benchmark(Baseline = true)]
        public HttpResponseMessage ConstantHeader() => Send(_constant);

        [Benchmark]
        public HttpResponseMessage Topi() => Send(_topi);

        /// <summary>With an ActivityListener and a MeterListener attached for other names than "Topi".</summary>
        [Benchmark]
        public HttpResponseMessage Topi_ForeignListener() => Send(_topi);

        /// <summary>With an ActivityListener that records "Topi" (informational: what tracing the library costs).</summary>
        [Benchmark]
        public HttpResponseMessage Topi_TopiListener() => Send(_topi);

        private static HttpResponseMessage Send(HttpMessageInvoker invoker)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, Bench.ApiRequestUri);
            Task<HttpResponseMessage> pending = invoker.SendAsync(request, CancellationToken.None);
            return pending.IsCompletedSuccessfully ? pending.Result : pending.GetAwaiter().GetResult();
        }
    }

    /// <summary>
    /// (4) A GET against a raw-socket HTTP/1.1 keep-alive server on 127.0.0.1, response read and disposed:
    /// TopiClient.HttpClient versus a raw HttpClient with a constant Authorization header.
    /// </summary>
    [MemoryDiagnoser]
    public class Loopback
    {
        private LoopbackServer _server = null!;
        private HttpClient _raw = null!, _rawDefaultHandler = null!;
        private TopiClient _topi = null!;
        private Uri _uri = null!;

        [GlobalSetup]
        public void Setup()
        {
            _server = new LoopbackServer();
            _uri = new Uri(_server.BaseUri, "v1/shipping-method");
            var header = new AuthenticationHeaderValue("Bearer", Bench.AccessToken);
            // The baseline: the same SocketsHttpHandler settings as TopiClient's own pool (no redirects,
            // automatic decompression, 5 min connection lifetime) and the same timeout.
            _raw = new HttpClient(TopiLikeHandler(), disposeHandler: true) { Timeout = TimeSpan.FromSeconds(30) };
            _raw.DefaultRequestHeaders.Authorization = header;
            // An HttpClient as most code creates it (default handler: no Accept-Encoding header).
            _rawDefaultHandler = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
            _rawDefaultHandler.DefaultRequestHeaders.Authorization = header;
            _topi = new TopiClient(Bench.Options(_server.TokenUri, _server.BaseUri));
            Get(_raw).GetAwaiter().GetResult();
            Get(_rawDefaultHandler).GetAwaiter().GetResult();
            Get(_topi.HttpClient).GetAwaiter().GetResult();
            if (_server.TokenRequests != 1) throw new InvalidOperationException("TopiClient should have fetched one token.");
        }

        // The settings of TopiClient's default SocketsHttpHandler (copied, so a rename inside Topi.cs cannot break the build).
        private static SocketsHttpHandler TopiLikeHandler() => new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.All,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };

        [GlobalCleanup]
        public void Cleanup()
        {
            if (_server.TokenRequests != 1) throw new InvalidOperationException("Expected one token request, got " + _server.TokenRequests + ".");
            _topi.Dispose();
            _raw.Dispose();
            _rawDefaultHandler.Dispose();
            _server.Dispose();
        }

        [Benchmark(Baseline = true)]
        public Task<int> RawHttpClient() => Get(_raw);

        [Benchmark]
        public Task<int> RawHttpClient_DefaultHandler() => Get(_rawDefaultHandler);

        [Benchmark]
        public Task<int> TopiClient() => Get(_topi.HttpClient);

        private async Task<int> Get(HttpClient client)
        {
            using HttpResponseMessage response = await client.GetAsync(_uri, HttpCompletionOption.ResponseContentRead).ConfigureAwait(false);
            if (response.StatusCode != HttpStatusCode.OK) throw new InvalidOperationException("Unexpected status " + response.StatusCode + ".");
            return (int)response.StatusCode;
        }
    }
}
