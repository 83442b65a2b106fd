using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D7: GetAllPagesAsync on a page that is not JSON (a proxy's 200 HTML page) or whose JSON is nested deeper than
/// the reader allows. The walk must end with a TopiException (as every other malformed page does), not with the
/// parser's raw JsonException.
/// </summary>
public sealed class PaginationErrorTests
{
    [Fact]
    public async Task GetAllPagesAsync_FirstPageIs200Html_ThrowsTopiException()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Html(200));

        Exception? ex = await Record.ExceptionAsync(() => TestSupport.WalkPagesAsync(client));

        AssertTopiException(ex);
        Assert.Equal(1, server.ApiRequests);
    }

    [Fact]
    public async Task GetAllPagesAsync_SecondPageIsNotJson_ThrowsTopiExceptionAfterFirstItems()
    {
        await using var server = FakeTopiServer.Start(new FakeTopiServerOptions { ShippingMethodCount = 5, PageSize = 2 });
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        var seen = new List<HsShippingMethod>();
        server.EnqueueApiFault(FakeFault.Delay(TimeSpan.Zero)); // page 0: answered normally
        server.EnqueueApiFault(FakeFault.Status(200, "Service maintenance, back soon", "text/plain"));

        Exception? ex = await Record.ExceptionAsync(() => TestSupport.WalkPagesAsync(client, items: seen));

        AssertTopiException(ex);
        Assert.Equal(server.ShippingMethods.Take(2).Select(m => m.Id), seen.Select(m => m.Id));
    }

    [Theory]
    [InlineData(65)]
    [InlineData(200)]
    public async Task GetAllPagesAsync_DataNestedDeeperThan64_ThrowsTopiException(int depth)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        string deep = "{\"data\":" + new string('[', depth) + new string(']', depth) + ",\"pagination\":{\"has_more\":false}}";
        server.EnqueueApiFault(FakeFault.Json(deep, 200));

        Exception? ex = await Record.ExceptionAsync(() => TestSupport.WalkPagesAsync(client));

        AssertTopiException(ex);
    }

    private static void AssertTopiException(Exception? ex)
    {
        Assert.NotNull(ex);
        Assert.True(ex is TopiException, "expected a TopiException, got " + ex!.GetType().FullName + ": " + ex.Message);
    }
}
