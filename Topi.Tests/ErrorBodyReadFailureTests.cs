using System.Text;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D3: the Seller API answers an error status whose body breaks off (the connection closes before Content-Length
/// bytes arrived, or is reset right after the headers). TopiClient must report that as a transient
/// <see cref="TopiException"/>, never as a raw IOException / HttpIOException / HttpRequestException.
/// The API is a raw socket server (exact bytes); tokens come from the fake topi server.
/// </summary>
public sealed class ErrorBodyReadFailureTests
{
    private const string Secret = "p@ss:w/rd+ü%&=";

    public static TheoryData<int, string, string> BrokenErrorBodies => new()
    {
        { 404, "application/json", "close" },
        { 404, "application/json", "reset" },
        { 404, FakeTopiServer.GoaErrorContentType, "close" },
        { 500, "application/json", "reset" },
        { 422, FakeTopiServer.GoaErrorContentType, "reset" },
    };

    [Theory]
    [MemberData(nameof(BrokenErrorBodies))]
    public async Task GetAsync_ErrorBodyBreaksOff_ThrowsTransientTopiException(int status, string contentType, string ending)
    {
        await using var tokens = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        await using var api = RgRawHttpServer.Start(async exchange =>
        {
            // Content-Length: 1000, but only the start of a goa error arrives.
            await exchange.SendAsync(RgRawHttpServer.Head(status, "Error", contentType, 1000));
            await exchange.SendAsync(Encoding.ASCII.GetBytes("{\"name\":"));
            if (ending == "reset") exchange.Reset();
            else exchange.Close();
        });
        using var client = new TopiClient(OptionsFor(tokens, api));

        Exception? ex = await Record.ExceptionAsync(() => client.GetAsync("v1/shipping-method?page=0", HsJsonContext.Default.HsShippingMethodPage));

        Assert.NotNull(ex);
        Assert.True(ex is TopiException, "expected a TopiException, got " + ex!.GetType().FullName + ": " + ex.Message);
        Assert.True(((TopiException)ex).IsTransient, "a body that broke off is transient");
        Assert.NotEmpty(api.Requests);
        HsAssert.NoSecrets(ex, Secret, tokens);
    }

    [Fact]
    public async Task DeleteAsync_404JsonBodyBreaksOff_ThrowsTransientTopiException()
    {
        await using var tokens = FakeTopiServer.Start(new FakeTopiServerOptions { ClientSecret = Secret });
        await using var api = RgRawHttpServer.Start(async exchange =>
        {
            await exchange.SendAsync(RgRawHttpServer.Head(404, "Not Found", "application/json", 1000));
            await exchange.SendAsync(Encoding.ASCII.GetBytes("{\"name\":"));
            exchange.Close();
        });
        using var client = new TopiClient(OptionsFor(tokens, api));

        Exception? ex = await Record.ExceptionAsync(() => client.DeleteAsync("v1/shipping-method/m-1"));

        Assert.NotNull(ex);
        Assert.True(ex is TopiException { IsTransient: true }, "expected a transient TopiException, got " + ex!.GetType().FullName);
    }

    private static TopiOptions OptionsFor(FakeTopiServer tokens, RgRawHttpServer api)
    {
        TopiOptions options = TestSupport.OptionsFor(tokens);
        options.Environment = new TopiEnvironment(tokens.EnvironmentName, tokens.TokenEndpoint, api.BaseAddress);
        options.RequestTimeout = TimeSpan.FromSeconds(10);
        return options;
    }
}
