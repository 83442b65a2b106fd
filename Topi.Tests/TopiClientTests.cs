using System.Diagnostics.CodeAnalysis;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

public sealed class TopiClientTests
{
    private const string Secret = "p@ss:w/rd+ü%&=";

    [Fact]
    public async Task GetAsync_TypedPage_ReadsSnakeCaseItems()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret, ShippingMethodCount = 3, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        HsShippingMethodPage page = await client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage);

        Assert.NotNull(page.Data);
        Assert.Equal(server.ShippingMethods.Take(2).Select(m => m.Id), page.Data!.Select(m => m.Id));
        Assert.Equal("SM-001", page.Data[0].SellerShippingMethodReference);
        Assert.Equal(server.ShippingMethods[0].Name, page.Data[0].Name);
        Assert.True(page.Pagination!.HasMore);
        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        Assert.Equal("GET", api.Method);
        Assert.Equal("/v1/shipping-method?page=0", api.Path);
        Assert.Contains("application/json", api.Header("Accept"));
    }

    [Fact]
    public async Task PostJsonAsync_Create_SendsSnakeCaseJsonAndReadsCreated()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret, ShippingMethodCount = 0 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        var create = new HsCreateShippingMethod { SellerShippingMethodReference = "REF-ü-1", Name = "Über Nacht", IsInStorePickup = true };

        HsShippingMethod created = await client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath, create,
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod);

        var held = Assert.Single(server.ShippingMethods);
        Assert.Equal(held.Id, created.Id);
        Assert.Equal("REF-ü-1", created.SellerShippingMethodReference);
        Assert.Equal("Über Nacht", created.Name);
        Assert.True(created.IsInStorePickup);
        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        Assert.Equal("POST", api.Method);
        Assert.Equal(JsonSerializer.SerializeToUtf8Bytes(create, HsJsonContext.Default.HsCreateShippingMethod), api.Body);
        using (JsonDocument body = JsonDocument.Parse(api.Body))
            Assert.Equal("REF-ü-1", body.RootElement.GetProperty("seller_shipping_method_reference").GetString());
        var contentType = MediaTypeHeaderValue.Parse(api.Header("Content-Type")!);
        Assert.Equal("application/json", contentType.MediaType);
        Assert.Equal("utf-8", contentType.CharSet, ignoreCase: true);
    }

    [Fact]
    public async Task PutJsonAsync_Success_SendsPutWithJsonBodyAndReadsResponse()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("{\"id\":\"m-1\",\"seller_shipping_method_reference\":\"R1\",\"name\":\"n\",\"is_in_store_pickup\":false,\"supported\":true}"));
        var update = new HsCreateShippingMethod { SellerShippingMethodReference = "R1", Name = "n" };

        HsShippingMethod result = await client.PutJsonAsync("v1/shipping-method/m-1", update,
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod);

        Assert.Equal("m-1", result.Id);
        Assert.True(result.Supported);
        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        Assert.Equal("PUT", api.Method);
        Assert.Equal("/v1/shipping-method/m-1", api.Path);
        Assert.Equal(JsonSerializer.SerializeToUtf8Bytes(update, HsJsonContext.Default.HsCreateShippingMethod), api.Body);
        Assert.StartsWith("Bearer ", api.Header("Authorization"));
    }

    [Fact]
    public async Task PatchJsonAsync_Success_SendsPatchWithJsonBodyAndReadsResponse()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("{\"id\":\"m-2\",\"seller_shipping_method_reference\":\"R2\",\"supported\":false}"));
        var patch = new HsCreateShippingMethod { SellerShippingMethodReference = "R2" };

        HsShippingMethod result = await client.PatchJsonAsync("/v1/shipping-method/m-2", patch,
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod);

        Assert.Equal("m-2", result.Id);
        Assert.False(result.Supported);
        Assert.Null(result.Name);
        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        Assert.Equal("PATCH", api.Method);
        Assert.Equal("/v1/shipping-method/m-2", api.Path);
        Assert.Equal("{\"seller_shipping_method_reference\":\"R2\"}", api.BodyText);
    }

    [Fact]
    public async Task DeleteAsync_NoContent_Completes()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(204, "", ""));

        await client.DeleteAsync("v1/shipping-method/m-3");

        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        Assert.Equal("DELETE", api.Method);
        Assert.Equal("/v1/shipping-method/m-3", api.Path);
        Assert.StartsWith("Bearer ", api.Header("Authorization"));
    }

    [Fact]
    public async Task DeleteAsync_UnknownRoute_ThrowsGoa404()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.DeleteAsync("v1/no-such-thing"));

        Assert.Equal(HttpStatusCode.NotFound, ex.StatusCode);
        Assert.Equal("NotFound", ex.ErrorName);
        Assert.False(string.IsNullOrEmpty(ex.ErrorId));
        Assert.Contains("no route", ex.ErrorMessage);
        Assert.False(ex.Temporary);
        Assert.False(ex.IsTransient);
        Assert.Contains("DELETE /v1/no-such-thing", ex.Message);
        Assert.Contains("404", ex.Message);
        Assert.Equal(1, server.ApiRequests); // a 404 is final, even for an idempotent method
    }

    [Fact]
    public async Task PostJsonAsync_Bridges_ThrowsTopiApiException422WithGoaFields()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        var create = new HsCreateShippingMethod { SellerShippingMethodReference = FakeTopiServer.BridgesReference, Name = "Bridges" };

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath, create,
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

        Assert.Equal((HttpStatusCode)422, ex.StatusCode);
        Assert.Equal("Unprocessable", ex.ErrorName);
        Assert.Matches("^[0-9a-f]{8}$", ex.ErrorId);
        Assert.Equal("There is already a shipping method with reference Bridges", ex.ErrorMessage);
        Assert.False(ex.Temporary);
        Assert.False(ex.Timeout);
        Assert.False(ex.Fault);
        Assert.False(ex.IsTransient);
        Assert.Contains(ex.ErrorId!, ex.Message);
        Assert.Contains("POST /v1/shipping-method/method", ex.Message);
        Assert.Equal(1, server.ApiRequests);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task PostJsonAsync_GoaErrorWithAllFlags_ParsesFlagsAndIsTransient()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(500,
            "{\"name\":\"fault\",\"id\":\"abc123\",\"message\":\"database timeout\",\"temporary\":true,\"timeout\":true,\"fault\":true}",
            FakeTopiServer.GoaErrorContentType));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath,
            new HsCreateShippingMethod { SellerShippingMethodReference = "x" },
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

        Assert.Equal(HttpStatusCode.InternalServerError, ex.StatusCode);
        Assert.Equal("fault", ex.ErrorName);
        Assert.Equal("abc123", ex.ErrorId);
        Assert.Equal("database timeout", ex.ErrorMessage);
        Assert.True(ex.Temporary);
        Assert.True(ex.Timeout);
        Assert.True(ex.Fault);
        Assert.True(ex.IsTransient);
        Assert.Equal(1, server.ApiRequests); // POST: never retried
    }

    [Fact]
    public async Task GetAsync_Repeated401_ThrowsWithPlainStringErrorMessage()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));
        server.EnqueueApiFault(FakeFault.Status(401, FakeTopiServer.UnauthorizedBody));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage));

        Assert.Equal(HttpStatusCode.Unauthorized, ex.StatusCode);
        Assert.Equal("Unauthorized", ex.ErrorMessage);
        Assert.Null(ex.ErrorName);
        Assert.Null(ex.ErrorId);
        Assert.False(ex.IsTransient);
        Assert.Equal(2, server.ApiRequests);
        Assert.Equal(2, server.TokenRequests);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task GetAsync_Forbidden_ThrowsWithPlainStringErrorMessage()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Status(403, "\"Forbidden: missing scope seller-shipping-method:read\""));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage));

        Assert.Equal(HttpStatusCode.Forbidden, ex.StatusCode);
        Assert.Equal("Forbidden: missing scope seller-shipping-method:read", ex.ErrorMessage);
        Assert.Null(ex.ErrorName);
        Assert.False(ex.IsTransient);
        Assert.Contains("Forbidden: missing scope", ex.Message);
        Assert.Equal(1, server.ApiRequests);
    }

    [Fact]
    public async Task PostJsonAsync_HtmlBadGatewayFromProxy_ThrowsWithStatusAndShortSanitizedExcerpt()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Html(502));

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath,
            new HsCreateShippingMethod { SellerShippingMethodReference = "x" },
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

        Assert.Equal(HttpStatusCode.BadGateway, ex.StatusCode);
        Assert.True(ex.IsTransient);
        Assert.Null(ex.ErrorName);
        Assert.Null(ex.ErrorMessage);
        Assert.Contains("502", ex.Message);
        Assert.Contains("<title>502 Bad Gateway</title>", ex.Message);
        Assert.DoesNotContain('\r', ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
        Assert.True(ex.Message.Length < 400, "message too long: " + ex.Message.Length);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task SendAsync_LongHtmlErrorBody_ExcerptIsCut()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        string page = "<html><body>" + string.Concat(Enumerable.Repeat("<p>upstream failed</p>\n", 2000)) + "</body></html>";
        server.EnqueueApiFault(FakeFault.Status(418, page, "text/html"));
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/shipping-method");

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.SendAsync(request));

        Assert.Equal((HttpStatusCode)418, ex.StatusCode);
        Assert.Contains("upstream failed", ex.Message);
        Assert.True(ex.Message.Length < 400, "message too long: " + ex.Message.Length);
    }

    [Fact]
    public async Task SendAsync_ErrorStatus_DisposesResponse()
    {
        var api = new HsScriptedHandler((request, n) => HsScriptedHandler.Respond(422,
            "{\"name\":\"unprocessable\",\"message\":\"nope\"}", FakeTopiServer.GoaErrorContentType));
        using var client = new TopiClient(HsScriptedHandler.InMemoryOptions(), api);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/shipping-method/method") { Content = new StringContent("{}") };

        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.SendAsync(request));

        Assert.Equal("nope", ex.ErrorMessage);
        var content = Assert.Single(api.ApiContents);
        Assert.Equal(1, content.DisposeCount);
    }

    [Fact]
    public async Task GetAsync_ErrorStatus_DisposesResponse()
    {
        var api = new HsScriptedHandler((request, n) => HsScriptedHandler.Respond(404, "{\"name\":\"NotFound\",\"message\":\"gone\"}", FakeTopiServer.GoaErrorContentType));
        using var client = new TopiClient(HsScriptedHandler.InMemoryOptions(), api);

        await Assert.ThrowsAsync<TopiApiException>(() => client.GetAsync("v1/x", HsJsonContext.Default.HsShippingMethod));

        var content = Assert.Single(api.ApiContents);
        Assert.Equal(1, content.DisposeCount);
    }

    [Fact]
    public async Task SendAsync_Success_ReturnsUndisposedResponse()
    {
        var api = new HsScriptedHandler((request, n) => HsScriptedHandler.Respond(200, "{\"id\":\"1\"}"));
        using var client = new TopiClient(HsScriptedHandler.InMemoryOptions(), api);
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/x");

        using (HttpResponseMessage response = await client.SendAsync(request))
        {
            Assert.Equal(0, Assert.Single(api.ApiContents).DisposeCount);
            Assert.Equal("{\"id\":\"1\"}", await response.Content.ReadAsStringAsync());
        }
        Assert.Equal(1, Assert.Single(api.ApiContents).DisposeCount);
    }

    [Theory]
    [InlineData("v1/shipping-method")]
    [InlineData("/v1/shipping-method")]
    public async Task GetAsync_RelativePath_ResolvesAgainstApiRoot(string path)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        await client.GetAsync(path, HsJsonContext.Default.HsShippingMethodPage);

        Assert.Equal("/v1/shipping-method", Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api).Path);
    }

    [Theory]
    [InlineData("prefix/", "v1/shipping-method")]
    [InlineData("prefix/", "/v1/shipping-method")]
    [InlineData("prefix", "/v1/shipping-method")]
    [InlineData("a/b/", "v1/shipping-method?page=3")]
    public async Task GetAsync_BaseAddressWithPathPrefix_KeepsPrefix(string prefix, string path)
    {
        await using var server = FakeTopiServer.Start();
        var options = TestSupport.OptionsFor(server);
        options.Environment = new TopiEnvironment(server.EnvironmentName, server.TokenEndpoint, new Uri(server.BaseAddress, prefix));
        using var client = new TopiClient(options);

        // The fake serves the API at its root only, so the prefixed path is a goa 404; what matters is the path it saw.
        var ex = await Assert.ThrowsAsync<TopiApiException>(() => client.GetAsync(path, HsJsonContext.Default.HsShippingMethodPage));

        Assert.Equal(HttpStatusCode.NotFound, ex.StatusCode);
        var api = Assert.Single(server.Requests, r => r.Kind == FakeEndpointKind.Api);
        string expectedPrefix = "/" + prefix.TrimEnd('/') + "/";
        Assert.Equal(expectedPrefix + path.TrimStart('/'), api.Path);
        Assert.StartsWith("Bearer ", api.Header("Authorization")); // the prefixed base is still the API origin
    }

    [Fact]
    public async Task SendAsync_BaseAddressWithPrefix_InMemoryRequestUriKeepsPrefix()
    {
        var api = new HsScriptedHandler((request, n) => HsScriptedHandler.Respond(200, "{}"));
        var options = HsScriptedHandler.InMemoryOptions();
        options.Environment = new TopiEnvironment("in-memory", options.Environment.TokenEndpoint, new Uri("http://127.0.0.1:9/gateway/topi"));
        using var client = new TopiClient(options, api);

        await client.GetAsync("/v1/shipping-method?page=2", HsJsonContext.Default.HsShippingMethodPage);
        await client.GetAsync("v1/shipping-method", HsJsonContext.Default.HsShippingMethodPage);

        Assert.Equal(
            new[] { "http://127.0.0.1:9/gateway/topi/v1/shipping-method?page=2", "http://127.0.0.1:9/gateway/topi/v1/shipping-method" },
            api.ApiRequests.Select(r => r.Uri.AbsoluteUri));
        Assert.All(api.ApiRequests, r => Assert.StartsWith("Bearer ", r.Authorization));
    }

    [Fact]
    public async Task GetAsync_RequestTimeoutExceeded_ThrowsTransientTopiException()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        // The token renewal's deadline runs on a manual clock, so the warm-up cannot time out on a loaded machine;
        // the API call's deadline is real time.
        var options = TestSupport.OptionsFor(server, new ManualTimeProvider());
        options.RequestTimeout = TimeSpan.FromMilliseconds(500);
        using var client = new TopiClient(options);
        await client.TokenProvider.GetTokenAsync(); // the token request is not what times out here
        var never = new TaskCompletionSource();
        server.EnqueueApiFault(FakeFault.Gate(never.Task));

        var ex = await Assert.ThrowsAsync<TopiException>(() => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage));

        Assert.IsType<TopiException>(ex);
        Assert.True(ex.IsTransient);
        Assert.Null(ex.StatusCode);
        Assert.Contains("timed out", ex.Message);
        Assert.IsAssignableFrom<OperationCanceledException>(ex.InnerException);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task GetAsync_CallerCancels_ThrowsOperationCanceledNotTimeout()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        var never = new TaskCompletionSource();
        server.EnqueueApiFault(FakeFault.Gate(never.Task));
        using var cts = new CancellationTokenSource();

        Task call = client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage, cts.Token);
        await TestSupport.EventuallyAsync(() => server.ApiRequests == 1, "the request reached the server");
        cts.Cancel();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        Assert.Equal(cts.Token, ex.CancellationToken);
    }

    // RequestTimeout is "the deadline of one logical operation ... one Seller API call through TopiClient". The
    // headers arrive at once, then the body trickles in one byte every 100 ms (a ~75 s body): the call must still
    // end at about the deadline with the transient timeout, not when the body is complete.
    [Fact]
    public async Task GetAsync_BodyTricklesPastRequestTimeout_ThrowsTransientTimeout()
    {
        await using var server = FakeTopiServer.Start();
        await using var raw = RawFaultServer.Start(RawFault.Trickle);
        raw.TrickleBodyOnly = true;
        raw.TrickleDelay = TimeSpan.FromMilliseconds(100);
        var options = TestSupport.OptionsFor(server, new ManualTimeProvider()); // the warm-up's deadline cannot fire
        options.Environment = new TopiEnvironment(server.EnvironmentName, server.TokenEndpoint, raw.BaseAddress);
        options.RequestTimeout = TimeSpan.FromMilliseconds(500);
        using var client = new TopiClient(options);
        await client.TokenProvider.GetTokenAsync();

        Task<HsTokenBody> call = client.GetAsync("v1/anything", HsJsonContext.Default.HsTokenBody);

        // Bounded so that a hang fails the test instead of stalling the run (the deadline is 0.5 s).
        var ex = await Assert.ThrowsAsync<TopiException>(() => call.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.True(ex.IsTransient);
        Assert.Null(ex.StatusCode);
    }

    // TopiException.IsTransient documents "a dropped connection" as transient, and TopiException is the base of
    // every error the client raises: a dropped connection on a (non-retried) POST should surface as one.
    [Fact]
    public async Task PostJsonAsync_ConnectionReset_ThrowsTransientTopiException()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        await using var raw = RawFaultServer.Start(RawFault.ResetBeforeStatusLine);
        var options = TestSupport.OptionsFor(server);
        options.Environment = new TopiEnvironment(server.EnvironmentName, server.TokenEndpoint, raw.BaseAddress);
        using var client = new TopiClient(options);

        var ex = await Assert.ThrowsAsync<TopiException>(() => client.PostJsonAsync("v1/shipping-method/method",
            new HsCreateShippingMethod { SellerShippingMethodReference = "x" },
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

        Assert.True(ex.IsTransient);
        Assert.Null(ex.StatusCode);
        Assert.IsType<HttpRequestException>(ex.InnerException);
        Assert.Equal(1, raw.Connections);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    public async Task GetAsync_BodyIsNotJson_ThrowsTopiException()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("{\"data\": [ {\"id\": 42,", 200));

        var ex = await Assert.ThrowsAsync<TopiException>(() => client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage));

        Assert.IsType<TopiException>(ex);
        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Contains("GET /v1/shipping-method", ex.Message);
        Assert.IsAssignableFrom<JsonException>(ex.InnerException);
        HsAssert.NoSecrets(ex, Secret, server);
    }

    [Fact]
    [UnconditionalSuppressMessage("Trimming", "IL2026", Justification = "Test of the reflection-based overloads.")]
    [UnconditionalSuppressMessage("AOT", "IL3050", Justification = "Test of the reflection-based overloads.")]
    public async Task ReflectionOverloads_ReadAndWriteSnakeCase()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 3, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        HsShippingMethodPage page = await client.GetAsync<HsShippingMethodPage>("v1/shipping-method?page=1");
        Assert.Equal(server.ShippingMethods[2].Id, Assert.Single(page.Data!).Id);
        Assert.False(page.Pagination!.HasMore);

        var all = new List<HsShippingMethod>();
        await foreach (HsShippingMethod m in client.GetAllPagesAsync<HsShippingMethod>(FakeTopiServer.ShippingMethodsPath))
            all.Add(m);
        Assert.Equal(server.ShippingMethods.Select(m => m.SellerShippingMethodReference), all.Select(m => m.SellerShippingMethodReference));

        var create = new HsCreateShippingMethod { SellerShippingMethodReference = "REFL-1", IsInStorePickup = true };
        HsShippingMethod created = await client.PostJsonAsync<HsCreateShippingMethod, HsShippingMethod>(FakeTopiServer.CreateShippingMethodPath, create);
        Assert.Equal("REFL-1", created.SellerShippingMethodReference);
        Assert.True(created.IsInStorePickup);
        RecordedRequest post = server.Requests.Last(r => r.Method == "POST" && r.Kind == FakeEndpointKind.Api);
        using (JsonDocument body = JsonDocument.Parse(post.Body))
        {
            Assert.Equal("REFL-1", body.RootElement.GetProperty("seller_shipping_method_reference").GetString());
            Assert.True(body.RootElement.GetProperty("is_in_store_pickup").GetBoolean());
            Assert.False(body.RootElement.TryGetProperty("name", out _)); // nulls are left out
        }

        server.EnqueueApiFault(FakeFault.Json("{\"id\":\"p\",\"seller_shipping_method_reference\":\"PUT-1\"}"));
        HsShippingMethod put = await client.PutJsonAsync<HsCreateShippingMethod, HsShippingMethod>("v1/shipping-method/p", create);
        Assert.Equal("PUT-1", put.SellerShippingMethodReference);

        server.EnqueueApiFault(FakeFault.Json("{\"id\":\"q\",\"seller_shipping_method_reference\":\"PATCH-1\"}"));
        HsShippingMethod patched = await client.PatchJsonAsync<HsCreateShippingMethod, HsShippingMethod>("v1/shipping-method/q", create);
        Assert.Equal("PATCH-1", patched.SellerShippingMethodReference);
        Assert.Equal("PATCH", server.Requests.Last(r => r.Kind == FakeEndpointKind.Api).Method);
    }

    [Fact]
    public async Task Dispose_CallerProvidedInnerHandler_IsNotDisposed()
    {
        await using var server = FakeTopiServer.Start();
        var inner = new HsDisposeTrackingHandler(new SocketsHttpHandler { AllowAutoRedirect = false });
        try
        {
            using (var client = new TopiClient(TestSupport.OptionsFor(server), inner))
                await client.GetAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethodPage);

            Assert.Equal(0, inner.DisposeCount);
            // And it still works for its owner.
            using var http = new HttpClient(inner, disposeHandler: false);
            using HttpResponseMessage response = await http.GetAsync(new Uri(server.BaseAddress, "v1/shipping-method"));
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }
        finally
        {
            inner.Dispose();
        }
        Assert.Equal(1, inner.DisposeCount);
    }

    [Fact]
    public async Task HttpClient_ErrorStatus_IsReturnedNotThrown()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        using HttpResponseMessage response = await client.HttpClient.GetAsync("v1/no-such-route");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal(server.BaseAddress, client.HttpClient.BaseAddress);
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers of the HTTP-side test files (AuthenticationHandlerTests, ApiRetryTests,
// TopiClientTests, PaginationTests, SyncOverAsyncTests, TelemetryTests). Prefixed "Hs" so they
// never clash with other files' helpers.
// ---------------------------------------------------------------------------------------------

public sealed class HsShippingMethod
{
    public string? Id { get; set; }
    public string? SellerShippingMethodReference { get; set; }
    public string? Name { get; set; }
    public bool IsInStorePickup { get; set; }
    public bool Supported { get; set; }
}

public sealed class HsCreateShippingMethod
{
    public string? SellerShippingMethodReference { get; set; }
    public string? Name { get; set; }
    public bool? IsInStorePickup { get; set; }
}

public sealed class HsPagination
{
    public bool HasMore { get; set; }
    public long Page { get; set; }
}

public sealed class HsShippingMethodPage
{
    public List<HsShippingMethod>? Data { get; set; }
    public HsPagination? Pagination { get; set; }
}

public sealed class HsTokenBody
{
    public string? AccessToken { get; set; }
    public double ExpiresIn { get; set; }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(HsShippingMethod))]
[JsonSerializable(typeof(HsCreateShippingMethod))]
[JsonSerializable(typeof(HsShippingMethodPage))]
[JsonSerializable(typeof(HsTokenBody))]
public sealed partial class HsJsonContext : JsonSerializerContext
{
}

/// <summary>Assertions shared by the HTTP-side tests.</summary>
internal static class HsAssert
{
    /// <summary>No secret and no token the server issued appears in the exception chain's messages or ToString.</summary>
    public static void NoSecrets(Exception ex, string secret, FakeTopiServer server)
    {
        var tokens = IssuedTokens(server);
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            string text = e.Message + "\n" + e.ToString();
            Assert.DoesNotContain(secret, text);
            Assert.DoesNotContain(Uri.EscapeDataString(secret), text);
            foreach (string token in tokens)
                Assert.False(text.Contains(token, StringComparison.Ordinal), "an access token appears in " + e.GetType().Name);
        }
    }

    /// <summary>Every bearer token the server saw (API requests' Authorization headers).</summary>
    public static List<string> IssuedTokens(FakeTopiServer server) =>
        server.Requests.Select(r => r.Header("Authorization"))
            .Where(h => h is not null && h.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            .Select(h => h!.Substring(7).Trim()).Distinct().ToList();
}

/// <summary>HttpContent whose disposal is counted.</summary>
internal sealed class HsCountingContent : ByteArrayContent
{
    private int _disposeCount;

    public HsCountingContent(byte[] body) : base(body) { }

    public int DisposeCount => Volatile.Read(ref _disposeCount);

    protected override void Dispose(bool disposing)
    {
        if (disposing) Interlocked.Increment(ref _disposeCount);
        base.Dispose(disposing);
    }
}

/// <summary>A request as the in-memory handler saw it.</summary>
internal sealed record HsSeenRequest(HttpMethod Method, Uri Uri, string? Authorization, byte[] Body);

/// <summary>
/// An in-memory terminal handler that completes synchronously. Requests for <c>/oauth2/token</c> get a valid
/// token response (a fresh token each time); every other request is answered by the script, whose responses'
/// contents are wrapped in <see cref="HsCountingContent"/> and kept in <see cref="ApiContents"/>.
/// </summary>
internal sealed class HsScriptedHandler : HttpMessageHandler
{
    public const string ApiBase = "http://127.0.0.1:9/";
    private readonly Func<HttpRequestMessage, int, HttpResponseMessage> _script;
    private readonly object _sync = new();
    private readonly List<HsSeenRequest> _apiRequests = new();
    private readonly List<HsCountingContent> _apiContents = new();
    private int _tokenRequests;

    public HsScriptedHandler(Func<HttpRequestMessage, int, HttpResponseMessage> script) => _script = script;

    public int TokenRequests => Volatile.Read(ref _tokenRequests);

    public IReadOnlyList<HsSeenRequest> ApiRequests { get { lock (_sync) return _apiRequests.ToArray(); } }

    public IReadOnlyList<HsCountingContent> ApiContents { get { lock (_sync) return _apiContents.ToArray(); } }

    /// <summary>Options for an environment served entirely by this handler.</summary>
    public static TopiOptions InMemoryOptions(TimeProvider? time = null) => new()
    {
        ClientId = "in-memory-client",
        ClientSecret = "in-memory-secret",
        Environment = new TopiEnvironment("in-memory", new Uri(ApiBase + "oauth2/token"), new Uri(ApiBase)),
        RetryBaseDelay = TimeSpan.Zero,
        TimeProvider = time ?? TimeProvider.System,
    };

    public static HttpResponseMessage Respond(int status, string body = "", string contentType = "application/json", params (string Name, string Value)[] headers)
    {
        var response = new HttpResponseMessage((HttpStatusCode)status) { Content = new StringContent(body, Encoding.UTF8) };
        response.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        foreach (var (name, value) in headers) response.Headers.TryAddWithoutValidation(name, value);
        return response;
    }

    protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken) =>
        SendAsync(request, cancellationToken).GetAwaiter().GetResult();

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (request.RequestUri!.AbsolutePath.EndsWith("/oauth2/token", StringComparison.Ordinal))
        {
            int n = Interlocked.Increment(ref _tokenRequests);
            string token = "in-memory-token-" + n + "-" + Guid.NewGuid().ToString("N");
            return Task.FromResult(Respond(200, "{\"access_token\":\"" + token + "\",\"expires_in\":3600,\"token_type\":\"Bearer\"}"));
        }

        byte[] body = request.Content is null ? Array.Empty<byte>() : request.Content.ReadAsByteArrayAsync(cancellationToken).GetAwaiter().GetResult();
        int index;
        lock (_sync)
        {
            _apiRequests.Add(new HsSeenRequest(request.Method, request.RequestUri, request.Headers.Authorization?.ToString(), body));
            index = _apiRequests.Count;
        }
        HttpResponseMessage response = _script(request, index);
        byte[] content = response.Content.ReadAsByteArrayAsync(cancellationToken).GetAwaiter().GetResult();
        var counting = new HsCountingContent(content);
        foreach (var header in response.Content.Headers)
            if (!string.Equals(header.Key, "Content-Length", StringComparison.OrdinalIgnoreCase))
                counting.Headers.TryAddWithoutValidation(header.Key, header.Value);
        response.Content.Dispose();
        response.Content = counting;
        response.RequestMessage = request;
        lock (_sync) _apiContents.Add(counting);
        return Task.FromResult(response);
    }
}

/// <summary>A pass-through handler that counts its disposals.</summary>
internal sealed class HsDisposeTrackingHandler : DelegatingHandler
{
    private int _disposeCount;

    public HsDisposeTrackingHandler(HttpMessageHandler inner) : base(inner) { }

    public int DisposeCount => Volatile.Read(ref _disposeCount);

    protected override void Dispose(bool disposing)
    {
        if (disposing) Interlocked.Increment(ref _disposeCount);
        base.Dispose(disposing);
    }
}

/// <summary>A read-only, non-seekable stream of unknown length; a subclass says what its reads return.</summary>
internal abstract class HsReadOnlyStream : Stream
{
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A read-only, non-seekable stream of unknown length over some bytes.</summary>
internal sealed class HsNonSeekableStream : HsReadOnlyStream
{
    private readonly MemoryStream _inner;

    public HsNonSeekableStream(byte[] data) => _inner = new MemoryStream(data, writable: false);

    public int ReadCalls { get; private set; }

    public override int Read(byte[] buffer, int offset, int count) { ReadCalls++; return _inner.Read(buffer, offset, count); }
    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) { ReadCalls++; return _inner.ReadAsync(buffer, cancellationToken); }
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) => ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
}
