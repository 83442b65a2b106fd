using System.Net;
using System.Text;
using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// How the token response is read. Lifetime rule (Topi.cs): expires_in as a number or numeric string; absent or null
/// means 7200 s; below 1 s or not finite is rejected; fractions kept to the millisecond; above 24 h capped at 24 h.
/// </summary>
public sealed class TokenResponseParsingTests
{
    private static readonly DateTimeOffset Start = new(2026, 12, 3, 12, 0, 0, TimeSpan.Zero);

    [Theory]
    [InlineData("3600", 3_600_000L)]
    [InlineData("\"3600\"", 3_600_000L)]
    [InlineData("\" 900 \"", 900_000L)]
    [InlineData("1.5", 1_500L)]
    [InlineData("\"2.25\"", 2_250L)]
    [InlineData("3600.1239", 3_600_123L)]
    [InlineData("1", 1_000L)]
    [InlineData("86400", 86_400_000L)]
    [InlineData("86401", 86_400_000L)]
    [InlineData("1e12", 86_400_000L)]
    [InlineData("\"1e12\"", 86_400_000L)]
    [InlineData("9223372036854775807", 86_400_000L)]
    [InlineData("null", 7_200_000L)]
    public async Task ExpiresIn_UsableValue_SetsExpiresAt(string expiresInJson, long expectedMilliseconds)
    {
        TopiToken token = await AcceptedAsync(server => server.ExpiresInJson = expiresInJson, new ManualTimeProvider(Start));

        Assert.Equal(Start + TimeSpan.FromMilliseconds(expectedMilliseconds), token.ExpiresAt);
    }

    [Fact]
    public async Task ExpiresIn_Absent_DefaultsToTwoHours()
    {
        TopiToken token = await AcceptedAsync(server => server.OmitExpiresIn = true, new ManualTimeProvider(Start));

        Assert.Equal(Start + TimeSpan.FromSeconds(7200), token.ExpiresAt);
    }

    [Fact]
    public async Task ExpiresIn_AbsurdlyLarge_TokenIsNotTrustedForMoreThanADay()
    {
        var time = new ManualTimeProvider(Start);
        await using FakeTopiServer server = StartServer(time);
        server.ExpiresInJson = "1e12";
        using TopiTokenProvider provider = Provider(server, time, SkewWithoutRefreshAhead);

        TopiToken first = await provider.GetTokenAsync();
        time.Advance(TimeSpan.FromHours(24) - TimeSpan.FromSeconds(61));
        Assert.Same(first, Peek(provider));
        time.Advance(TimeSpan.FromSeconds(1));
        TopiToken second = await provider.GetTokenAsync();

        Assert.NotSame(first, second);
        Assert.Equal(2, server.TokenRequests);
    }

    [Theory]
    [InlineData("0")]
    [InlineData("\"0\"")]
    [InlineData("-5")]
    [InlineData("\"-5\"")]
    [InlineData("0.5")]
    [InlineData("-1e12")]
    [InlineData("-1e400")]
    [InlineData("\"abc\"")]
    [InlineData("\"\"")]
    [InlineData("\"NaN\"")]
    [InlineData("\"Infinity\"")]
    [InlineData("\"-Infinity\"")]
    [InlineData("\"∞\"")]
    [InlineData("\"0x10\"")]
    [InlineData("true")]
    [InlineData("{}")]
    [InlineData("[3600]")]
    public async Task ExpiresIn_UnusableValue_Throws(string expiresInJson)
    {
        (TopiAuthenticationException ex, int tokenRequests) = await RefusedAsync(server => server.ExpiresInJson = expiresInJson);

        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Contains("expires_in", ex.Message);
        Assert.False(ex.IsTransient);
        Assert.Equal(1, tokenRequests); // a malformed answer is not retried
    }

    [Theory]
    [InlineData("Bearer")]
    [InlineData("bearer")]
    [InlineData("BEARER")]
    [InlineData("bEaReR")]
    public async Task TokenType_BearerInAnyCase_IsAccepted(string tokenType)
    {
        TopiToken token = await AcceptedAsync(server => server.TokenType = tokenType);

        Assert.Equal("Bearer", token.TokenType);
    }

    [Theory]
    [InlineData("mac")]
    [InlineData("Basic")]
    [InlineData("DPoP")]
    [InlineData("")]
    public async Task TokenType_NotBearer_Throws(string tokenType)
    {
        (TopiAuthenticationException ex, int tokenRequests) = await RefusedAsync(server => server.TokenType = tokenType);

        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Contains("token_type", ex.Message);
        Assert.Equal(1, tokenRequests);
    }

    [Fact]
    public async Task TokenType_Missing_IsAccepted()
    {
        await using FakeTopiServer server = StartServer();
        string jwt = server.IssueToken();
        server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + jwt + "\",\"expires_in\":3600,\"scope\":\"client\"}"));
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        Assert.True(jwt == token.AccessToken, "the access token is the one in the body"); // never print a token
        Assert.Equal("Bearer", token.TokenType);
    }

    [Theory]
    [InlineData("{\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":null,\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":\"\",\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":12345,\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":{\"a\":\"b\"},\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":\"has a space\",\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":\"t\u00f6ken\",\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    [InlineData("{\"access_token\":\"line\\r\\nbreak\",\"expires_in\":3600,\"token_type\":\"Bearer\"}")]
    public async Task AccessToken_MissingOrUnusable_Throws(string body)
    {
        (TopiAuthenticationException ex, int tokenRequests) = await RefusedAsync(server => server.EnqueueTokenFault(FakeFault.Json(body)));

        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Contains("access_token", ex.Message);
        Assert.Equal(1, tokenRequests);
    }

    [Fact]
    public async Task OAuthError_InsideA200_ThrowsWithErrorSet()
    {
        (TopiAuthenticationException ex, int tokenRequests) = await RefusedAsync(server =>
            server.EnqueueTokenFault(FakeFault.Json("{\"error\":\"invalid_client\",\"error_description\":\"Client authentication failed\"}", 200)));

        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Equal("invalid_client", ex.Error);
        Assert.Equal("Client authentication failed", ex.ErrorDescription);
        Assert.False(ex.IsTransient);
        Assert.Equal(1, tokenRequests);
    }

    [Theory]
    [InlineData(200)]
    [InlineData(502)]
    public async Task HtmlPage_Throws_WithStatusAndAShortSanitizedExcerpt(int status)
    {
        (TopiAuthenticationException ex, _) = await RefusedAsync(server => server.EnqueueTokenFault(FakeFault.Html(status)), o => o.MaxTokenAttempts = 1);

        Assert.Equal((HttpStatusCode)status, ex.StatusCode);
        if (status == 200) Assert.DoesNotContain("<title>", ex.Message); // a 2xx body may hold a token: never quoted
        else Assert.Contains("<title>" + status, ex.Message); // an excerpt of the error page
        AssertSanitized(ex.Message);
        Assert.Equal(status == 502, ex.IsTransient);
        Assert.Null(ex.Error);
    }

    [Fact]
    public async Task HtmlPage_Long_ExcerptStaysShort()
    {
        var html = new StringBuilder("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n");
        for (int i = 0; i < 500; i++) html.Append("<p>\tline ").Append(i).Append(" of a very chatty proxy error page\r\n</p>\n");
        string page = html.Append("</body></html>").ToString();

        (TopiAuthenticationException ex, _) = await RefusedAsync(server => server.EnqueueTokenFault(FakeFault.Status(502, page, "text/html")), o => o.MaxTokenAttempts = 1);

        Assert.Equal(HttpStatusCode.BadGateway, ex.StatusCode);
        AssertSanitized(ex.Message);
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("")]
    public async Task EmptyBody_With200_Throws(string contentType)
    {
        (TopiAuthenticationException ex, _) = await RefusedAsync(server => server.EnqueueTokenFault(FakeFault.Status(200, "", contentType)));

        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Contains("empty", ex.Message);
        AssertSanitized(ex.Message);
    }

    [Theory]
    [InlineData(64 * 1024 + 1)]
    [InlineData(5 * 1024 * 1024)]
    public async Task Body_Over64KiB_ThrowsWithStatus(int size)
    {
        (TopiAuthenticationException ex, int tokenRequests) = await RefusedAsync(server => server.EnqueueTokenFault(FakeFault.Oversized(size)));

        Assert.Contains("64 KiB", ex.Message);
        Assert.Equal(HttpStatusCode.OK, ex.StatusCode);
        Assert.Equal(1, tokenRequests);
    }

    [Fact]
    public async Task Body_Exactly64KiB_IsAccepted_AndOneByteMoreIsNot()
    {
        await using FakeTopiServer server = StartServer();
        string jwt = server.IssueToken();
        server.EnqueueTokenFault(FakeFault.Json(PaddedTokenBody(jwt, 64 * 1024)));
        server.EnqueueTokenFault(FakeFault.Json(PaddedTokenBody(jwt, 64 * 1024 + 1)));
        using TopiTokenProvider accepting = Provider(server);
        using TopiTokenProvider refusing = Provider(server);

        Assert.True(jwt == (await accepting.GetTokenAsync()).AccessToken, "the 64 KiB body was read");
        TopiAuthenticationException ex = await FailAsync(refusing);
        Assert.Contains("64 KiB", ex.Message);
    }

    [Fact]
    public async Task Body_TrailingCommasAndUnknownFields_AreTolerated()
    {
        await using FakeTopiServer server = StartServer();
        string jwt = server.IssueToken();
        string body = "{\n\"id_token\": null,\n\"access_token\": \"" + jwt + "\",\n\"unknown\": {\"nested\": [1, 2, {\"deep\": [true, false,],},],},\n"
            + "\"expires_in\": 3600,\n\"refresh_token\": \"x\",\n\"token_type\": \"Bearer\",\n\"scope\": \"client\",\n}";
        server.EnqueueTokenFault(FakeFault.Json(body));
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        Assert.True(jwt == token.AccessToken, "the access token is the one in the body");
        Assert.Equal(["client"], token.Scopes);
    }

    [Fact]
    public async Task Scopes_GuideString_ParsedAsSpaceSeparatedSetInServerOrder()
    {
        TopiToken token = await AcceptedAsync(); // the fake answers FakeTopiServer.GuideScope, byte for byte

        string[] expected =
        [
            "seller-catalog:read", "seller-catalog:edit", "seller-metrics:read", "seller-offer:read", "seller-offer:edit",
            "seller-order:read", "seller-order:edit", "seller-shipping-method:edit", "seller-shipping-method:read",
            "seller-shipment:edit", "user-info:read",
        ];
        Assert.Equal(expected, token.Scopes); // the guide lists seller-metrics:read twice; granted scopes are a set
        foreach (string scope in expected) Assert.True(token.HasScope(scope), scope);
        Assert.False(token.HasScope("client"));
        Assert.False(token.HasScope("seller-catalog"));
        Assert.False(token.HasScope("SELLER-CATALOG:READ"));
        Assert.False(token.HasScope(""));
    }

    [Fact]
    public async Task Scopes_ExtraWhitespace_IsIgnored()
    {
        TopiToken token = await AcceptedAsync(server => server.Scope = "  seller-order:read   user-info:read ");

        Assert.Equal(["seller-order:read", "user-info:read"], token.Scopes);
    }

    [Fact]
    public async Task Scopes_AbsentFromResponse_AreTheRequestedOnes()
    {
        TopiToken token = await AcceptedAsync(server =>
            server.EnqueueTokenFault(FakeFault.Json("{\"access_token\":\"" + server.IssueToken() + "\",\"token_type\":\"Bearer\",\"expires_in\":60}")));

        Assert.Equal(["client"], token.Scopes); // RFC 6749 §5.1: omitted scope = the requested scope
    }

    [Fact]
    public async Task TopiToken_ToString_IsRedacted()
    {
        TopiToken token = await AcceptedAsync();

        Assert.False(token.ToString().Contains(token.AccessToken, StringComparison.Ordinal), "ToString shows the token");
        Assert.False(token.ToString().Contains(token.AccessToken.Split('.')[1], StringComparison.Ordinal), "ToString shows the token's payload");
        Assert.Contains("redacted", token.ToString());
    }

    // The first token a fresh provider gets from a fake server (on `time`) that `arrange` has set up.
    private static async Task<TopiToken> AcceptedAsync(Action<FakeTopiServer>? arrange = null, ManualTimeProvider? time = null)
    {
        await using FakeTopiServer server = StartServer(time);
        arrange?.Invoke(server);
        using TopiTokenProvider provider = Provider(server, time);
        return await provider.GetTokenAsync();
    }

    // What a fresh provider's first GetTokenAsync throws when `arrange` has set up the fake server's answer, and how
    // many token requests the server saw.
    private static async Task<(TopiAuthenticationException Error, int TokenRequests)> RefusedAsync(Action<FakeTopiServer> arrange, Action<TopiOptions>? configure = null)
    {
        await using FakeTopiServer server = StartServer();
        arrange(server);
        using TopiTokenProvider provider = Provider(server, configure: configure);
        return (await FailAsync(provider), server.TokenRequests);
    }

    private static string PaddedTokenBody(string jwt, int totalBytes)
    {
        string head = "{\"access_token\":\"" + jwt + "\",\"expires_in\":3600,\"token_type\":\"Bearer\",\"padding\":\"";
        const string tail = "\"}";
        return head + new string('a', totalBytes - head.Length - tail.Length) + tail;
    }

    private static void AssertSanitized(string message)
    {
        Assert.DoesNotContain('\n', message);
        Assert.DoesNotContain('\r', message);
        Assert.DoesNotContain('\t', message);
        Assert.True(message.Length <= 400, "message is " + message.Length + " characters long");
    }
}
