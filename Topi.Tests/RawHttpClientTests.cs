using System.Net;
using System.Text;
using Topi.Testing;
using Topi.Tests.Support;

namespace Topi.Tests;

/// <summary>
/// D4: <see cref="TopiClient.HttpClient"/> is the raw, non-throwing client. Looking at an error body (to see whether
/// a goa error says "temporary") must not change what the caller receives: a large JSON error body arrives whole,
/// with its Content-Length.
/// </summary>
public sealed class RawHttpClientTests
{
    private const int LargeBodyBytes = 100_033;

    [Theory]
    [InlineData(404, "application/json")]
    [InlineData(422, FakeTopiServer.GoaErrorContentType)]
    public async Task HttpClientGetAsync_LargeJsonErrorBody_ArrivesComplete(int status, string contentType)
    {
        await using var server = FakeTopiServer.Start();
        using var client = new TopiClient(TestSupport.OptionsFor(server));
        string body = GoaErrorOfExactly(LargeBodyBytes);
        server.EnqueueApiFault(FakeFault.Status(status, body, contentType));

        using HttpResponseMessage response = await client.HttpClient.GetAsync("v1/shipping-method?page=0");
        byte[] received = await response.Content.ReadAsByteArrayAsync();

        Assert.Equal((HttpStatusCode)status, response.StatusCode);
        Assert.Equal(LargeBodyBytes, received.Length);
        Assert.Equal(LargeBodyBytes, response.Content.Headers.ContentLength);
        Assert.True(Encoding.UTF8.GetBytes(body).AsSpan().SequenceEqual(received), "the body differs from what the server sent");
        Assert.Equal(contentType, response.Content.Headers.ContentType?.MediaType);
    }

    // {"name":"not_found","id":"abc","message":"xxxx…"} of exactly `bytes` bytes of ASCII.
    private static string GoaErrorOfExactly(int bytes)
    {
        const string head = "{\"name\":\"not_found\",\"id\":\"rg-4\",\"temporary\":false,\"message\":\"";
        const string tail = "\"}";
        string body = head + new string('x', bytes - head.Length - tail.Length) + tail;
        Assert.Equal(bytes, Encoding.UTF8.GetByteCount(body));
        return body;
    }
}
