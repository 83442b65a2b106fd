using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D13: the typed helpers promise a T. A 200 whose JSON body is the literal <c>null</c> must not come back as a
/// null the caller's non-nullable code dereferences later: it is a TopiException, like any other unexpected body.
/// </summary>
public sealed class TopiClientNullBodyTests
{
    [Theory]
    [InlineData("null")]
    [InlineData("  null\n")]
    public async Task GetAsync_200BodyNull_ThrowsTopiException(string body)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json(body, 200));

        Exception? ex = await Record.ExceptionAsync(() => client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage));

        Assert.NotNull(ex);
        Assert.True(ex is TopiException, "expected a TopiException, got " + ex!.GetType().FullName);
    }

    [Fact]
    public async Task PostJsonAsync_201BodyNull_ThrowsTopiException()
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        server.EnqueueApiFault(FakeFault.Json("null", 201));
        var create = new HsCreateShippingMethod { SellerShippingMethodReference = "REF-null", Name = "Null body" };

        Exception? ex = await Record.ExceptionAsync(() => client.PostJsonAsync(FakeTopiServer.CreateShippingMethodPath, create,
            HsJsonContext.Default.HsCreateShippingMethod, HsJsonContext.Default.HsShippingMethod));

        Assert.NotNull(ex);
        Assert.True(ex is TopiException, "expected a TopiException, got " + ex!.GetType().FullName);
    }
}
