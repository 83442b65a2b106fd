using System.Net;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D1: a <see cref="TopiAuthenticationHandler"/> whose inner handler follows redirects. The Seller API answers
/// <c>302 Location: http://127.0.0.1:{other port}/steal</c>; the inner handler follows it, and the foreign server
/// answers 401 or 503. The bearer token must never reach the foreign server, the valid token must not be dropped
/// because a foreign host rejected it, and nothing is replayed or retried against the foreign host.
/// </summary>
public sealed class RedirectSafetyTests
{
    private const string Secret = "p@ss:w/rd+ü%&=";

    // The way IHttpClientFactory builds a pipeline: handler constructed alone, InnerHandler set afterwards.
    // new SocketsHttpHandler() follows redirects by default.
    private static HttpClient FactoryStyleClient(TopiTokenProvider provider) =>
        new(new TopiAuthenticationHandler(provider) { InnerHandler = new SocketsHttpHandler() });

    [Theory]
    [InlineData(401)]
    [InlineData(503)]
    public async Task SendAsync_ApiRedirectsToForeignHost_ForeignHostNeverGetsBearerToken(int foreignStatus)
    {
        await using var redirect = await RedirectToForeignHost.ArrangeAsync(foreignStatus);
        TopiToken token = redirect.Token;

        Exception? failure = await SendIgnoringOutcomeAsync(redirect.Http, redirect.Server);

        var seen = redirect.Foreign.Requests;
        Assert.False(seen.Any(r => (r.Header("Authorization") ?? "").StartsWith("Bearer", StringComparison.OrdinalIgnoreCase)),
            $"the foreign host received a bearer token ({seen.Count} request(s); the call ended with {Describe(failure)})");
        Assert.DoesNotContain(seen, r => (r.Header("Authorization") ?? "").Contains(token.AccessToken, StringComparison.Ordinal));
    }

    [Fact]
    public async Task SendAsync_ForeignHostAfterRedirectAnswers401_ValidTokenIsKept()
    {
        const int foreignStatus = 401;
        await using var redirect = await RedirectToForeignHost.ArrangeAsync(foreignStatus);
        TopiToken token = redirect.Token;

        Exception? failure = await SendIgnoringOutcomeAsync(redirect.Http, redirect.Server);

        Assert.True(redirect.Server.TokenRequests == 1, $"a foreign host's {foreignStatus} made the client fetch another token ({redirect.Server.TokenRequests} token requests; the call ended with {Describe(failure)})");
        Assert.Same(token, TokenTestKit.Peek(redirect.Provider)); // still cached, not invalidated
    }

    [Theory]
    [InlineData(401)]
    [InlineData(503)]
    public async Task SendAsync_ForeignHostAfterRedirectRejects_NoReplayOrRetryToForeignHost(int foreignStatus)
    {
        await using var redirect = await RedirectToForeignHost.ArrangeAsync(foreignStatus);

        Exception? failure = await SendIgnoringOutcomeAsync(redirect.Http, redirect.Server);

        // At most the one request the inner handler itself made when it followed the redirect.
        Assert.True(redirect.Foreign.ApiRequests <= 1, $"the foreign host got {redirect.Foreign.ApiRequests} requests (replays or retries); the call ended with {Describe(failure)}");
    }

    [Fact]
    public async Task Constructor_ExplicitInnerHandlerThatFollowsRedirects_ThrowsArgumentException()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var follows = new SocketsHttpHandler(); // AllowAutoRedirect is true by default

        Assert.ThrowsAny<ArgumentException>(() => new TopiAuthenticationHandler(provider, follows));
    }

    [Fact]
    public async Task Constructor_ExplicitInnerHandlerThatFollowsRedirectsBehindDelegatingHandler_ThrowsArgumentException()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var follows = new HttpClientHandler(); // AllowAutoRedirect is true by default
        using var wrapper = new PassThroughHandler(follows);

        Assert.ThrowsAny<ArgumentException>(() => new TopiAuthenticationHandler(provider, wrapper));
    }

    // Control: an inner handler that does not follow redirects is accepted and works.
    [Fact]
    public async Task Constructor_ExplicitInnerHandlerWithoutRedirects_Works()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = new HttpClient(new TopiAuthenticationHandler(provider, new SocketsHttpHandler { AllowAutoRedirect = false }));

        using HttpResponseMessage response = await http.GetAsync(new Uri(server.BaseAddress, "v1/shipping-method?page=0"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    /// <summary>
    /// The Seller API (<see cref="Server"/>) answers the next call with <c>302</c> to <see cref="Foreign"/>, which answers
    /// <c>foreignStatus</c>; <see cref="Http"/> is a factory-style client whose provider already holds <see cref="Token"/>.
    /// </summary>
    private sealed class RedirectToForeignHost : IAsyncDisposable
    {
        private RedirectToForeignHost(FakeTopiServer server, FakeTopiServer foreign, TopiTokenProvider provider, HttpClient http)
        {
            Server = server;
            Foreign = foreign;
            Provider = provider;
            Http = http;
        }

        public FakeTopiServer Server { get; }
        public FakeTopiServer Foreign { get; }
        public TopiTokenProvider Provider { get; }
        public HttpClient Http { get; }
        public TopiToken Token { get; private set; } = null!;

        public static async Task<RedirectToForeignHost> ArrangeAsync(int foreignStatus)
        {
            var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
            var foreign = FakeTopiServer.Start();
            var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
            var redirect = new RedirectToForeignHost(server, foreign, provider, FactoryStyleClient(provider));
            try
            {
                server.EnqueueApiFault(FakeFault.Status(302, "", "text/plain", ("Location", new Uri(foreign.BaseAddress, "steal").ToString())));
                for (int i = 0; i < 6; i++)
                    foreign.EnqueueApiFault(FakeFault.Status(foreignStatus, foreignStatus == 401 ? FakeTopiServer.UnauthorizedBody : "\"busy\""));
                redirect.Token = await provider.GetTokenAsync();
                return redirect;
            }
            catch
            {
                await redirect.DisposeAsync();
                throw;
            }
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            Provider.Dispose();
            await Foreign.DisposeAsync();
            await Server.DisposeAsync();
        }
    }

    // The outcome for the caller is the fix's choice (the foreign response, or an exception); these tests look at the wire.
    private static async Task<Exception?> SendIgnoringOutcomeAsync(HttpClient http, FakeTopiServer server)
    {
        try
        {
            using HttpResponseMessage response = await http.GetAsync(new Uri(server.BaseAddress, "v1/shipping-method?page=0"));
            return null;
        }
        catch (Exception ex)
        {
            return ex;
        }
    }

    private static string Describe(Exception? ex) => ex is null ? "a response" : ex.GetType().Name;

    private sealed class PassThroughHandler : DelegatingHandler
    {
        public PassThroughHandler(HttpMessageHandler inner) : base(inner) { }
    }
}
