using System.Net;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

public sealed class PaginationTests
{
    private static List<string> ApiPaths(FakeTopiServer server) =>
        server.Requests.Where(r => r.Kind == FakeEndpointKind.Api).Select(r => r.Path).ToList();

    [Fact]
    public async Task GetAllPages_NoItems_OneRequestNothingYielded()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 0 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Empty(items);
        Assert.Equal(new[] { "/v1/shipping-method?page=0" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_OnePage_OneRequest()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 2, PageSize = 5 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Equal(server.ShippingMethods.Select(m => m.Id), items.Select(m => m.Id));
        Assert.Equal(new[] { "/v1/shipping-method?page=0" }, ApiPaths(server));
    }

    [Theory]
    [InlineData(7, 3, 3)]  // 3 + 3 + 1
    [InlineData(6, 3, 2)]  // an exact multiple: the second page says has_more false
    [InlineData(5, 1, 5)]
    public async Task GetAllPages_SeveralPages_AllItemsInOrderAndPagesRequestedInOrder(int count, int pageSize, int expectedPages)
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 0 });
        server.ResetShippingMethods(count);
        server.PageSize = pageSize;
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Equal(server.ShippingMethods.Select(m => m.Id), items.Select(m => m.Id));
        Assert.Equal(server.ShippingMethods.Select(m => m.SellerShippingMethodReference), items.Select(m => m.SellerShippingMethodReference));
        Assert.Equal(server.ShippingMethods.Select(m => m.Name), items.Select(m => m.Name));
        Assert.Equal(Enumerable.Range(0, expectedPages).Select(p => "/v1/shipping-method?page=" + p), ApiPaths(server));
        Assert.Equal(1, server.TokenRequests);
    }

    [Fact]
    public async Task GetAllPages_FirstPageOne_StartsThere()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client, firstPage: 1);

        Assert.Equal(server.ShippingMethods.Skip(2).Select(m => m.Id), items.Select(m => m.Id));
        Assert.Equal(new[] { "/v1/shipping-method?page=1", "/v1/shipping-method?page=2" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_IsLazy_FetchesOnePageAtATime()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 4, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        IAsyncEnumerable<HsShippingMethod> pages = client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod);
        Assert.Equal(0, server.ApiRequests);
        await using IAsyncEnumerator<HsShippingMethod> e = pages.GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync());
        Assert.True(await e.MoveNextAsync());
        Assert.Equal(1, server.ApiRequests);
        Assert.True(await e.MoveNextAsync());
        Assert.Equal(2, server.ApiRequests);
    }

    [Fact]
    public async Task GetAllPages_FailureOnSecondPage_YieldsFirstPageThenThrows()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Delay(TimeSpan.Zero)); // page 0 answers normally
        server.EnqueueApiFault(FakeFault.Status(422,
            "{\"name\":\"invalid_page\",\"id\":\"pg1\",\"message\":\"page expired\",\"temporary\":false,\"timeout\":false,\"fault\":false}",
            FakeTopiServer.GoaErrorContentType));

        var seen = new List<HsShippingMethod>();
        var ex = await Assert.ThrowsAsync<TopiApiException>(async () =>
        {
            await foreach (HsShippingMethod item in client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod))
                seen.Add(item);
        });

        Assert.Equal(server.ShippingMethods.Take(2).Select(m => m.Id), seen.Select(m => m.Id));
        Assert.Equal((HttpStatusCode)422, ex.StatusCode);
        Assert.Equal("invalid_page", ex.ErrorName);
        Assert.Equal("pg1", ex.ErrorId);
        Assert.Equal(new[] { "/v1/shipping-method?page=0", "/v1/shipping-method?page=1" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_TransientFailureOnSecondPage_RetriedAndCompletes()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Delay(TimeSpan.Zero));
        server.EnqueueApiFault(FakeFault.Status(503, "\"busy\""));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Equal(server.ShippingMethods.Select(m => m.Id), items.Select(m => m.Id));
        Assert.Equal(new[] { "/v1/shipping-method?page=0", "/v1/shipping-method?page=1", "/v1/shipping-method?page=1", "/v1/shipping-method?page=2" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_CancelledBetweenPages_ThrowsWithoutFurtherRequest()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        using var cts = new CancellationTokenSource();

        var seen = new List<HsShippingMethod>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (HsShippingMethod item in client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod, cancellationToken: cts.Token))
            {
                seen.Add(item);
                if (seen.Count == 2) cts.Cancel(); // the end of the first page
            }
        });

        Assert.Equal(2, seen.Count);
        Assert.Equal(new[] { "/v1/shipping-method?page=0" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_WithCancellationViaWithCancellation_Honoured()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        using var cts = new CancellationTokenSource();

        int seen = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (HsShippingMethod item in client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod).WithCancellation(cts.Token))
            {
                if (++seen == 2) cts.Cancel();
            }
        });

        Assert.Equal(2, seen);
        Assert.Equal(1, server.ApiRequests);
    }

    [Fact]
    public async Task GetAllPages_CancelledWhilePageInFlight_Throws()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        await client.TokenProvider.GetTokenAsync();
        var gate = new TaskCompletionSource();
        server.EnqueueApiFault(FakeFault.Gate(gate.Task));
        using var cts = new CancellationTokenSource();

        Task<List<HsShippingMethod>> walk = Task.Run(async () =>
        {
            var items = new List<HsShippingMethod>();
            await foreach (HsShippingMethod item in client.GetAllPagesAsync(FakeTopiServer.ShippingMethodsPath, HsJsonContext.Default.HsShippingMethod, cancellationToken: cts.Token))
                items.Add(item);
            return items;
        });
        await TestSupport.EventuallyAsync(() => server.ApiRequests == 1, "page 0 requested");
        cts.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => walk);
        gate.SetResult();
    }

    [Theory]
    [InlineData("v1/shipping-method?sort=asc", "/v1/shipping-method?sort=asc&page=")]
    [InlineData("/v1/shipping-method?a=1&b=2", "/v1/shipping-method?a=1&b=2&page=")]
    [InlineData("v1/shipping-method", "/v1/shipping-method?page=")]
    public async Task GetAllPages_PathWithOrWithoutQuery_AppendsPageCorrectly(string path, string expectedPrefix)
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 3, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client, path);

        Assert.Equal(3, items.Count);
        Assert.Equal(new[] { expectedPrefix + "0", expectedPrefix + "1" }, ApiPaths(server));
    }

    [Fact]
    public async Task GetAllPages_EmptyPageClaimingMore_Stops()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("{\"data\":[],\"pagination\":{\"has_more\":true,\"page\":0}}"));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Empty(items);
        Assert.Equal(1, server.ApiRequests);
    }

    [Fact]
    public async Task GetAllPages_MissingPagination_StopsAfterPage()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("{\"data\":[{\"id\":\"a\",\"seller_shipping_method_reference\":\"A\"}]}"));

        List<HsShippingMethod> items = await TestSupport.WalkPagesAsync(client);

        Assert.Equal("A", Assert.Single(items).SellerShippingMethodReference);
        Assert.Equal(1, server.ApiRequests);
    }

    [Theory]
    [InlineData("{\"items\":[]}")]
    [InlineData("[1,2,3]")]
    [InlineData("{\"data\":{\"id\":\"x\"}}")]
    public async Task GetAllPages_NotATopiPage_ThrowsTopiException(string body)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json(body));

        var ex = await Assert.ThrowsAsync<TopiException>(() => TestSupport.WalkPagesAsync(client));

        Assert.IsType<TopiException>(ex);
        Assert.Contains("GET /v1/shipping-method", ex.Message);
    }

    [Fact]
    public async Task GetAllPages_InvalidArguments_Throw()
    {
        using var client = new TopiClient(HsScriptedHandler.InMemoryOptions(), new HsScriptedHandler((r, n) => HsScriptedHandler.Respond(200, "{}")));

        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(async () =>
        {
            await foreach (var _ in client.GetAllPagesAsync("v1/x", HsJsonContext.Default.HsShippingMethod, firstPage: -1)) { }
        });
        await Assert.ThrowsAsync<ArgumentNullException>(async () =>
        {
            await foreach (var _ in client.GetAllPagesAsync("v1/x", (System.Text.Json.Serialization.Metadata.JsonTypeInfo<HsShippingMethod>)null!)) { }
        });
    }
}
