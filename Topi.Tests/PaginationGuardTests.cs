using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D17: GetAllPagesAsync must end. A server that ignores the page parameter (a non-empty page it answered before, still
/// "has_more") ends the walk with a TopiException instead of walking forever; a path whose fragment would swallow
/// the page number, or which already carries a page parameter, is refused before any request.
/// </summary>
public sealed class PaginationGuardTests
{
    private const string SamePage = "{\"data\":[{\"id\":\"m-1\"},{\"id\":\"m-2\"}],\"pagination\":{\"has_more\":true}}";
    private const string OtherPage = "{\"data\":[{\"id\":\"m-3\"}],\"pagination\":{\"has_more\":true}}";

    [Fact]
    public async Task GetAllPagesAsync_ServerRepeatsTheSamePage_ThrowsTopiExceptionAfterFirstPage()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        for (int i = 0; i < 3; i++) server.EnqueueApiFault(FakeFault.Json(SamePage, 200));
        var seen = new List<HsShippingMethod>();

        Exception? ex = await Record.ExceptionAsync(() => TestSupport.WalkPagesAsync(client, items: seen));

        Assert.True(ex is TopiException, "expected a TopiException, got " + ex?.GetType().FullName);
        Assert.Contains("answered before", ex!.Message);
        Assert.Equal(new[] { "m-1", "m-2" }, seen.Select(m => m.Id));
        Assert.Equal(2, server.ApiRequests);
    }

    // A, B, A: any page seen before, not only the one just before.
    [Fact]
    public async Task GetAllPagesAsync_ServerCyclesBetweenTwoPages_ThrowsTopiExceptionAfterBoth()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        foreach (string page in new[] { SamePage, OtherPage, SamePage, OtherPage }) server.EnqueueApiFault(FakeFault.Json(page, 200));
        var seen = new List<HsShippingMethod>();

        Exception? ex = await Record.ExceptionAsync(() => TestSupport.WalkPagesAsync(client, items: seen));

        Assert.True(ex is TopiException, "expected a TopiException, got " + ex?.GetType().FullName);
        Assert.Equal(new[] { "m-1", "m-2", "m-3" }, seen.Select(m => m.Id));
        Assert.Equal(3, server.ApiRequests);
    }

    // Refused when GetAllPagesAsync is called, before any enumeration.
    [Fact]
    public async Task GetAllPagesAsync_PathWithFragment_ThrowsAtTheCall()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        Assert.Throws<ArgumentException>(() => client.GetAllPagesAsync("v1/shipping-method#top", HsJsonContext.Default.HsShippingMethod));
        Assert.Throws<ArgumentOutOfRangeException>(() => client.GetAllPagesAsync("v1/shipping-method", HsJsonContext.Default.HsShippingMethod, firstPage: -1));
    }

    [Theory]
    [InlineData("v1/shipping-method#top")]
    [InlineData("v1/shipping-method?page=5")]
    [InlineData("v1/shipping-method?sort=name&page")]
    [InlineData("v1/shipping-method?sort=name&page=1")]
    [InlineData("v1/shipping-method?%70age=2")]
    [InlineData("v1/shipping-method?sort=name;page=3")]
    public async Task GetAllPagesAsync_PathWithFragmentOrPageParameter_ThrowsArgumentExceptionWithoutRequest(string path)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));

        ArgumentException ex = await Assert.ThrowsAsync<ArgumentException>(() => TestSupport.WalkPagesAsync(client, path));

        Assert.Equal("path", ex.ParamName);
        Assert.Equal(0, server.ApiRequests);
    }

    // Control: a query of its own, with a parameter that merely ends in "page", is kept.
    [Fact]
    public async Task GetAllPagesAsync_PathWithOtherQuery_WalksAllPages()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        var seen = new List<HsShippingMethod>();

        await TestSupport.WalkPagesAsync(client, "v1/shipping-method?perpage=2", items: seen);

        Assert.Equal(server.ShippingMethods.Select(m => m.Id), seen.Select(m => m.Id));
    }
}
