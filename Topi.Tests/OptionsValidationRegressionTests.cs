using System.Text;

namespace Topi.Tests;

/// <summary>
/// D10: a credential or scope with a lone surrogate cannot be UTF-8/form-encoded; it is refused up front with an
/// ArgumentException naming the property, never echoing the value.
/// D12: the API base address may not carry a query or a fragment (relative paths would resolve against them).
/// </summary>
public sealed class OptionsValidationRegressionTests
{
    private static readonly TopiEnvironment Loopback = new("test", new Uri("http://127.0.0.1:9/oauth2/token"), new Uri("http://127.0.0.1:9/"));

    // Built here, not passed through theory data: xunit's serialization of theory arguments would turn a lone
    // surrogate into U+FFFD (valid Unicode) before the test sees it.
    private static readonly string[] Values =
    [
        "ab\uD800cd",          // the brief's example: a lone high surrogate
        "Zx9LEAK\uDC00Qw7",    // a lone low surrogate
        "Zx9LEAK\uD83D",       // a high surrogate at the very end
        "client Zx9LEAK\uDFFFQw7",
    ];

    public static TheoryData<string, int> LoneSurrogates => new()
    {
        { nameof(TopiOptions.ClientSecret), 0 },
        { nameof(TopiOptions.ClientSecret), 1 },
        { nameof(TopiOptions.ClientSecret), 2 },
        { nameof(TopiOptions.ClientId), 0 },
        { nameof(TopiOptions.ClientId), 1 },
        { nameof(TopiOptions.Scope), 0 },
        { nameof(TopiOptions.Scope), 3 },
    };

    [Fact]
    public void TestData_LoneSurrogateValues_AreInvalidUtf16()
    {
        foreach (string value in Values)
            Assert.ThrowsAny<ArgumentException>(() => new UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(value)); // EncoderFallbackException
    }

    [Theory]
    [MemberData(nameof(LoneSurrogates))]
    public void Provider_LoneSurrogate_ThrowsArgumentExceptionNamingThePropertyNotTheValue(string property, int variant)
    {
        string value = Values[variant];
        TopiOptions options = With(property, value);

        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiTokenProvider(options).Dispose());

        Assert.Equal(property, ex.ParamName);
        AssertDoesNotEcho(ex, value);
    }

    [Theory]
    [MemberData(nameof(LoneSurrogates))]
    public void Client_LoneSurrogate_ThrowsArgumentExceptionNamingThePropertyNotTheValue(string property, int variant)
    {
        string value = Values[variant];
        TopiOptions options = With(property, value);

        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiClient(options).Dispose());

        Assert.Equal(property, ex.ParamName);
        AssertDoesNotEcho(ex, value);
    }

    [Theory]
    [InlineData("https://example.com/base?x=1#f")]
    [InlineData("https://example.com/base?x=1")]
    [InlineData("https://example.com/base#f")]
    [InlineData("https://example.com/base/?page=2")]
    [InlineData("http://127.0.0.1:9/base?x=1")]
    public void Environment_ApiBaseWithQueryOrFragment_ThrowsArgumentException(string apiBase)
    {
        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() =>
            new TopiEnvironment("x", new Uri("https://example.com/oauth2/token"), new Uri(apiBase)));

        Assert.Equal("apiBaseAddress", ex.ParamName);
    }

    // Control for the fix above: a plain base path is still accepted and gets its trailing slash.
    [Fact]
    public void Environment_ApiBaseWithoutTrailingSlash_GetsOne()
    {
        var environment = new TopiEnvironment("x", new Uri("https://example.com/oauth2/token"), new Uri("https://example.com/base"));

        Assert.Equal("https://example.com/base/", environment.ApiBaseAddress.AbsoluteUri);
    }

    private static TopiOptions With(string property, string value)
    {
        var options = new TopiOptions { ClientId = "client-id", ClientSecret = "client-secret", Environment = Loopback };
        switch (property)
        {
            case nameof(TopiOptions.ClientId): options.ClientId = value; break;
            case nameof(TopiOptions.ClientSecret): options.ClientSecret = value; break;
            default: options.Scope = value; break;
        }
        return options;
    }

    private static void AssertDoesNotEcho(Exception ex, string value)
    {
        foreach (string text in TokenTestKit.Texts(ex))
        {
            Assert.False(text.Contains(value, StringComparison.Ordinal), "a message echoes the value");
            Assert.False(text.Contains("Zx9LEAK", StringComparison.Ordinal) || text.Contains("Qw7", StringComparison.Ordinal), "a message echoes part of the value");
            Assert.False(text.Contains("ab\uD800", StringComparison.Ordinal) || text.Contains("\uD800cd", StringComparison.Ordinal), "a message echoes part of the value");
        }
    }
}
