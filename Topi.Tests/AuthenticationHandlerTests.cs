using System.Net;
using System.Net.Http.Json;
using System.Text;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

public sealed class AuthenticationHandlerTests
{
    private const string Secret = "p@ss:w/rd+ü%&=";
    private static readonly byte[] CreateBody = Encoding.UTF8.GetBytes("{\"seller_shipping_method_reference\":\"RÉF-ü-1\",\"name\":\"Nacht \\u00fc / \\\"Express\\\"\",\"is_in_store_pickup\":false}");

    // The way IHttpClientFactory builds a pipeline: handler constructed alone, InnerHandler set afterwards.
    private static HttpClient FactoryStyleClient(TopiTokenProvider provider, HttpMessageHandler? inner = null) =>
        new(new TopiAuthenticationHandler(provider) { InnerHandler = inner ?? new SocketsHttpHandler() });

    private static Uri Api(FakeTopiServer server, string path = "v1/shipping-method") => new(server.BaseAddress, path);

    [Fact]
    public async Task SendAsync_ApiOrigin_AttachesBearerTokenOfProvider()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);

        using HttpResponseMessage response = await http.GetAsync(Api(server));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        TopiToken token = await provider.GetTokenAsync();
        var api = Assert.Single(TestSupport.ApiRequests(server));
        Assert.True(api.Header("Authorization") == "Bearer " + token.AccessToken, "the API request did not carry the provider's token");
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task SendAsync_WarmCacheManyRequests_OneTokenRequest()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);

        for (int i = 0; i < 5; i++)
        {
            using HttpResponseMessage response = await http.GetAsync(Api(server));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Equal(1, server.TokenRequests);
        Assert.Single(TestSupport.ApiRequests(server).Select(r => r.Header("Authorization")).Distinct());
    }

    [Fact]
    public async Task SendAsync_OtherPort_SendsNoAuthorization()
    {
        await using var server = FakeTopiServer.Start();
        await using var other = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);

        using HttpResponseMessage toOther = await http.GetAsync(Api(other));
        using HttpResponseMessage toApi = await http.GetAsync(Api(server));

        Assert.Equal(HttpStatusCode.Unauthorized, toOther.StatusCode);
        var seen = Assert.Single(TestSupport.ApiRequests(other)); // a 401 from another origin is not "renewed" either
        Assert.Null(seen.Header("Authorization"));
        Assert.Equal(0, other.TokenRequests);
        Assert.Equal(HttpStatusCode.OK, toApi.StatusCode); // control: the API origin does get the token
        Assert.StartsWith("Bearer ", Assert.Single(TestSupport.ApiRequests(server)).Header("Authorization"));
    }

    [Fact]
    public async Task SendAsync_OtherHostSamePort_LocalhostInsteadOf127_SendsNoAuthorization()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        var localhost = new Uri("http://localhost:" + server.BaseAddress.Port + "/v1/shipping-method");

        using HttpResponseMessage response = await http.GetAsync(localhost);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var seen = Assert.Single(TestSupport.ApiRequests(server));
        Assert.Null(seen.Header("Authorization"));
    }

    [Fact]
    public async Task SendAsync_OtherSchemeSameHostAndPort_SendsNoAuthorization()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        var recorder = new HsScriptedHandler((request, n) => HsScriptedHandler.Respond(200, "{}"));
        using var http = FactoryStyleClient(provider, recorder);
        int port = server.BaseAddress.Port;

        (await http.GetAsync("https://127.0.0.1:" + port + "/v1/shipping-method")).Dispose();
        (await http.GetAsync("http://127.0.0.1:" + port + "/v1/shipping-method")).Dispose();
        (await http.GetAsync("http://127.0.0.2:" + port + "/v1/shipping-method")).Dispose();
        (await http.GetAsync("http://127.0.0.1:" + (port == 65535 ? 1 : port + 1) + "/v1/shipping-method")).Dispose();

        var seen = recorder.ApiRequests;
        Assert.Equal(4, seen.Count);
        Assert.Null(seen[0].Authorization);
        Assert.StartsWith("Bearer ", seen[1].Authorization); // control
        Assert.Null(seen[2].Authorization);
        Assert.Null(seen[3].Authorization);
    }

    [Fact]
    public async Task SendAsync_CallerAuthorizationToOtherOrigin_IsLeftAlone()
    {
        await using var server = FakeTopiServer.Start();
        await using var other = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        using var request = new HttpRequestMessage(HttpMethod.Get, Api(other));
        request.Headers.TryAddWithoutValidation("Authorization", "Bearer caller-own");

        (await http.SendAsync(request)).Dispose();

        Assert.Equal("Bearer caller-own", Assert.Single(TestSupport.ApiRequests(other)).Header("Authorization"));
        Assert.Equal(0, server.TokenRequests);
    }

    public static TheoryData<string, string> ReplayCases() => new()
    {
        { "bytes", "revoke" },
        { "bytes", "fault" },
        { "string", "revoke" },
        { "json-content", "revoke" },
        { "seekable-stream", "revoke" },
        { "non-seekable-known-length", "fault" },
    };

    private static HttpContent MakeContent(string kind)
    {
        switch (kind)
        {
            case "bytes":
                var bytes = new ByteArrayContent(CreateBody);
                bytes.Headers.ContentType = new("application/json");
                return bytes;
            case "string":
                return new StringContent(Encoding.UTF8.GetString(CreateBody), Encoding.UTF8, "application/json");
            case "json-content":
                return JsonContent.Create(new HsCreateShippingMethod { SellerShippingMethodReference = "RÉF-ü-1", Name = "Nacht" }, HsJsonContext.Default.HsCreateShippingMethod);
            case "seekable-stream":
                var seekable = new StreamContent(new MemoryStream(CreateBody));
                seekable.Headers.ContentType = new("application/json");
                return seekable;
            case "non-seekable-known-length":
                var known = new StreamContent(new HsNonSeekableStream(CreateBody));
                known.Headers.ContentType = new("application/json");
                known.Headers.ContentLength = CreateBody.Length;
                return known;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind));
        }
    }

    [Theory]
    [MemberData(nameof(ReplayCases))]
    public async Task SendAsync_Post401_RenewsOnceAndReplaysBodyByteForByte(string contentKind, string how)
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret, ShippingMethodCount = 0 });
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        TopiToken first = await provider.GetTokenAsync();
        if (how == "revoke") server.RevokeAllTokens();
        else server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));

        using HttpResponseMessage response = await http.PostAsync(Api(server, "v1/shipping-method/method"), MakeContent(contentKind));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var api = TestSupport.ApiRequests(server);
        Assert.Equal(2, api.Count);
        Assert.True(api[0].Body.Length > 0);
        Assert.Equal(api[0].Body, api[1].Body);
        if (contentKind != "json-content") Assert.Equal(CreateBody, api[1].Body);
        Assert.Equal(api[0].Header("Content-Type"), api[1].Header("Content-Type"));
        Assert.True(api[0].Header("Authorization") == "Bearer " + first.AccessToken, "first attempt used the cached token");
        Assert.NotEqual(api[0].Header("Authorization"), api[1].Header("Authorization"));
        Assert.Equal(2, server.TokenRequests);
        Assert.Single(server.ShippingMethods); // created once
        TopiToken current = await provider.GetTokenAsync();
        Assert.NotSame(first, current);
        Assert.True(api[1].Header("Authorization") == "Bearer " + current.AccessToken, "the retry used the renewed token");
    }

    [Fact]
    public async Task SendAsync_Get401WithWarmCache_RenewsOnceAndSucceeds()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        await provider.GetTokenAsync();
        server.RevokeAllTokens();

        using HttpResponseMessage response = await http.GetAsync(Api(server));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(2, server.ApiRequests);
        Assert.Equal(2, server.TokenRequests);
    }

    [Fact]
    public async Task SendAsync_Second401_IsFinal()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 0 });
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));
        server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));

        using HttpResponseMessage response = await http.PostAsync(Api(server, "v1/shipping-method/method"), new ByteArrayContent(CreateBody));

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal(FakeTopiServer.UnauthorizedBody, await response.Content.ReadAsStringAsync());
        Assert.Equal(2, server.ApiRequests);
        Assert.Equal(2, server.TokenRequests);
        Assert.Empty(server.ShippingMethods);
    }

    [Fact]
    public async Task SendAsync_Second401ThroughTopiClient_ThrowsAfterTwoAttempts()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        server.RevokeAllTokens();
        server.EnqueueApiFault(FakeFault.Delay(TimeSpan.Zero)); // the first attempt meets the revoked token
        server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage));

        Assert.Equal(HttpStatusCode.Unauthorized, ex.StatusCode);
        Assert.Equal(2, server.ApiRequests);
        Assert.Equal(2, server.TokenRequests);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task SendAsync_TwentyConcurrent401sForSameToken_OneRenewal()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        TopiToken first = await provider.GetTokenAsync();
        server.RevokeAllTokens();
        TaskCompletionSource renewalGate = TokenTestKit.HoldTokenEndpoint(server);

        // Hold the 20 requests at the server until all of them have arrived with the old token (otherwise a late
        // starter would already find the token invalidated and wait for the new one), then let them meet their 401s.
        var apiGate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        for (int i = 0; i < 20; i++) server.EnqueueApiFault(FakeFault.Gate(apiGate.Task));

        var calls = Enumerable.Range(0, 20).Select(_ => http.GetAsync(Api(server))).ToArray();
        await TestSupport.EventuallyAsync(() => server.ApiRequests == 20, "20 requests arrived with the old token");
        apiGate.SetResult();
        // Hold the renewal until every request has met its 401 with the same old token.
        await TestSupport.EventuallyAsync(() => server.UnauthorizedApiRequests == 20, "20 requests answered 401");
        await TestSupport.EventuallyAsync(() => server.TokenRequestsInFlight == 1, "the renewal reached the token endpoint");
        renewalGate.SetResult();
        HttpResponseMessage[] responses = await Task.WhenAll(calls);

        try
        {
            Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
            Assert.Equal(2, server.TokenRequests);
            Assert.Equal(2, server.TokensIssued);
            Assert.Equal(40, server.ApiRequests);
            var api = TestSupport.ApiRequests(server);
            Assert.Equal(20, api.Count(r => r.Header("Authorization") == "Bearer " + first.AccessToken));
            Assert.Equal(2, api.Select(r => r.Header("Authorization")).Distinct().Count());
        }
        finally
        {
            foreach (var r in responses) r.Dispose();
        }
    }

    [Fact]
    public async Task Send_Synchronous_ThrowsNotSupportedAndSendsNothing()
    {
        await using var server = FakeTopiServer.Start();
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        Assert.Throws<NotSupportedException>(() => http.Send(new HttpRequestMessage(HttpMethod.Get, Api(server))));
        Assert.Throws<NotSupportedException>(() => client.HttpClient.Send(new HttpRequestMessage(HttpMethod.Get, "v1/shipping-method")));

        Assert.Equal(0, server.ApiRequests);
        Assert.Equal(0, server.TokenRequests);
    }

    [Fact]
    public async Task SendAsync_NonReplayableBody401_SentOnceAndReturned()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 0 });
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        await provider.GetTokenAsync();
        server.RevokeAllTokens();
        var stream = new HsNonSeekableStream(CreateBody);
        var content = new StreamContent(stream);
        content.Headers.ContentType = new("application/json");

        using HttpResponseMessage response = await http.PostAsync(Api(server, "v1/shipping-method/method"), content);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var api = Assert.Single(TestSupport.ApiRequests(server));
        Assert.Equal(CreateBody, api.Body); // the whole body went out, once
        Assert.Empty(server.ShippingMethods);
    }

    // Issue 2: "On a 401 the handler invalidates that token". A request whose body cannot be replayed is not retried,
    // but the rejected token must still leave the cache; otherwise every later non-replayable request (an upload
    // service) keeps failing with 401 until the token's natural expiry, up to hours later.
    [Fact]
    public async Task SendAsync_NonReplayableBody401_StillInvalidatesTokenForNextRequest()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 0 });
        using var provider = new TopiTokenProvider(TestSupport.OptionsFor(server));
        using var http = FactoryStyleClient(provider);
        TopiToken first = await provider.GetTokenAsync();
        server.RevokeAllTokens();

        using HttpResponseMessage rejected = await http.PostAsync(Api(server, "v1/shipping-method/method"), new StreamContent(new HsNonSeekableStream(CreateBody)));
        Assert.Equal(HttpStatusCode.Unauthorized, rejected.StatusCode);

        TopiToken next = await provider.GetTokenAsync();
        Assert.NotSame(first, next);
        using HttpResponseMessage accepted = await http.PostAsync(Api(server, "v1/shipping-method/method"), new StreamContent(new HsNonSeekableStream(CreateBody)));
        Assert.Equal(HttpStatusCode.Created, accepted.StatusCode);
        Assert.Equal(2, server.ApiRequests);
    }

    [Fact]
    public async Task SendAsync_TokenEndpointFails_PropagatesAuthenticationErrorAndSendsNoApiRequest()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        var options = TestSupport.OptionsFor(server);
        options.ClientSecret = Secret + "-wrong";
        using var provider = new TopiTokenProvider(options);
        using var http = FactoryStyleClient(provider);

        var ex = await Assert.ThrowsAsync<TopiAuthenticationException>(() => http.GetAsync(Api(server)));

        Assert.Equal("invalid_client", ex.Error);
        Assert.Equal(0, server.ApiRequests);
        HsAssert.NoSecrets(ex, Secret, server);
        HsAssert.NoSecrets(ex, options.ClientSecret, server);
    }

    [Fact]
    public void Constructor_NullArguments_Throw()
    {
        Assert.Throws<ArgumentNullException>(() => new TopiAuthenticationHandler(null!));
        using var provider = new TopiTokenProvider(HsScriptedHandler.InMemoryOptions());
        Assert.Throws<ArgumentNullException>(() => new TopiAuthenticationHandler(provider, null!));
    }
}
