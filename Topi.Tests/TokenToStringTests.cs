using Topi.Testing;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>
/// D11: TopiToken.ToString() goes into logs, so a scope string from the token endpoint must not inject lines or
/// control characters there; and Scopes lists each granted scope once (the guide's own scope string lists
/// seller-metrics:read twice).
/// </summary>
public sealed class TokenToStringTests
{
    [Theory]
    [InlineData("a\r\nINJECTED b\u0000c")]
    [InlineData("client\nFAKE-LOG-LINE level=error")]
    [InlineData("client\u001b[31mred\u0085next\u007fdel")]
    public async Task ToString_ScopeWithControlCharacters_HasNoControlCharacters(string scope)
    {
        await using FakeTopiServer server = StartServer();
        server.Scope = scope;
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();
        string text = token.ToString();

        Assert.False(text.Contains(token.AccessToken, StringComparison.Ordinal), "ToString shows the access token");
        Assert.False(text.Any(char.IsControl), "ToString contains a control character: " + Escape(text));
    }

    [Fact]
    public async Task Scopes_GuideScopeListsAScopeTwice_HasNoDuplicates()
    {
        await using FakeTopiServer server = StartServer(); // answers the guide's scope string, byte for byte
        using TopiTokenProvider provider = Provider(server);

        TopiToken token = await provider.GetTokenAsync();

        Assert.Equal(token.Scopes.Count, token.Scopes.Distinct(StringComparer.Ordinal).Count());
        Assert.Single(token.Scopes, s => s == "seller-metrics:read");
        // Nothing lost either: every distinct scope of the guide's string is there.
        Assert.Equal(FakeTopiServer.GuideScope.Split(' ').Distinct().OrderBy(s => s, StringComparer.Ordinal),
            token.Scopes.OrderBy(s => s, StringComparer.Ordinal));
        Assert.True(token.HasScope("seller-metrics:read"));
    }

    private static string Escape(string text) =>
        string.Concat(text.Select(c => char.IsControl(c) ? "\\u" + ((int)c).ToString("x4") : c.ToString()));
}
