using Topi.Testing;
using Topi.Tests.Support;
using static Topi.Tests.TokenTestKit;

namespace Topi.Tests;

/// <summary>TopiOptions and TopiEnvironment validation: ArgumentException naming the property, never echoing the value.</summary>
public sealed class OptionsValidationTests
{
    private static readonly TopiEnvironment Loopback = new("test", new Uri("http://127.0.0.1:9/oauth2/token"), new Uri("http://127.0.0.1:9/"));

    private static TopiOptions Valid() => new()
    {
        ClientId = "client-id",
        ClientSecret = "client-secret",
        Environment = Loopback,
    };

    // The values are secrets as far as the output goes: test names carry only a case label, never the value.
    private static readonly Dictionary<string, (string Property, string? Value)> BadCredentialCases = new()
    {
        ["ClientId#0"] = (nameof(TopiOptions.ClientId), null),
        ["ClientId#1"] = (nameof(TopiOptions.ClientId), ""),
        ["ClientId#2"] = (nameof(TopiOptions.ClientId), "   "),
        ["ClientId#3"] = (nameof(TopiOptions.ClientId), "\t\r\n"),
        ["ClientId#4"] = (nameof(TopiOptions.ClientId), "id-LEAKME\r\nX-Injected: 1"),
        ["ClientId#5"] = (nameof(TopiOptions.ClientId), "id-LEAKME\n"),
        ["ClientId#6"] = (nameof(TopiOptions.ClientId), "id-LEAKME\0"),
        ["ClientSecret#7"] = (nameof(TopiOptions.ClientSecret), null),
        ["ClientSecret#8"] = (nameof(TopiOptions.ClientSecret), ""),
        ["ClientSecret#9"] = (nameof(TopiOptions.ClientSecret), " "),
        ["ClientSecret#10"] = (nameof(TopiOptions.ClientSecret), "\u00a0\u2003"),
        ["ClientSecret#11"] = (nameof(TopiOptions.ClientSecret), "secret-LEAKME\r\nX-Injected: 1"),
        ["ClientSecret#12"] = (nameof(TopiOptions.ClientSecret), "secret-LEAKME\r"),
        ["ClientSecret#13"] = (nameof(TopiOptions.ClientSecret), "secret-LEAKME\u0007bell"),
        ["ClientSecret#14"] = (nameof(TopiOptions.ClientSecret), "secret-LEAKME\u007f"),
        ["ClientSecret#15"] = (nameof(TopiOptions.ClientSecret), "secret-LEAKME\u0085"),
        ["ClientSecret#16"] = (nameof(TopiOptions.ClientSecret), "p@ss:w/rd+ü%&=LEAKME\u001b[31m"),
    };

    public static TheoryData<string> BadCredentials => new(BadCredentialCases.Keys);

    [Theory]
    [MemberData(nameof(BadCredentials))]
    public void Provider_BadCredential_ThrowsArgumentExceptionNamingThePropertyNotTheValue(string credentialCase)
    {
        (string property, string? value) = BadCredentialCases[credentialCase];
        TopiOptions options = Valid();
        if (property == nameof(TopiOptions.ClientId)) options.ClientId = value!;
        else options.ClientSecret = value!;

        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiTokenProvider(options));

        Assert.Equal(property, ex.ParamName);
        Assert.Contains(property, ex.Message);
        AssertDoesNotEcho(ex, value);
    }

    [Theory]
    [MemberData(nameof(BadCredentials))]
    public void Client_BadCredential_ThrowsArgumentExceptionNamingThePropertyNotTheValue(string credentialCase)
    {
        (string property, string? value) = BadCredentialCases[credentialCase];
        TopiOptions options = Valid();
        if (property == nameof(TopiOptions.ClientId)) options.ClientId = value!;
        else options.ClientSecret = value!;

        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiClient(options));

        Assert.Equal(property, ex.ParamName);
        AssertDoesNotEcho(ex, value);
    }

    private static readonly Dictionary<string, string> UnusualSecrets = new()
    {
        ["reserved characters"] = "p@ss:w/rd+ü%&=",
        ["leading and trailing spaces"] = " leading and trailing spaces ",
        ["non-ASCII and an emoji"] = "ünïcödé-ßécret-🔑",
    };

    public static TheoryData<string> UnusualSecretCases => new(UnusualSecrets.Keys);

    [Theory]
    [MemberData(nameof(UnusualSecretCases))]
    public void Provider_UnusualButPrintableSecret_IsAccepted(string secretCase)
    {
        TopiOptions options = Valid();
        options.ClientSecret = UnusualSecrets[secretCase];

        using var provider = new TopiTokenProvider(options);

        Assert.Equal("test", provider.Environment.Name);
    }

    [Theory]
    [InlineData("http://example.com/oauth2/token")]
    [InlineData("http://identity.topi.eu/oauth2/token")]
    [InlineData("http://localhost.example.com/oauth2/token")]
    [InlineData("http://127.0.0.1.nip.io/oauth2/token")]
    [InlineData("http://10.0.0.1/oauth2/token")]
    [InlineData("ftp://127.0.0.1/oauth2/token")]
    [InlineData("ws://localhost/oauth2/token")]
    [InlineData("https://user:password-LEAKME@identity.topi.eu/oauth2/token")]
    public void Environment_InsecureTokenEndpoint_IsRejected(string endpoint)
    {
        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment("custom", new Uri(endpoint), new Uri("https://seller-api.topi.eu/")));

        Assert.Equal("tokenEndpoint", ex.ParamName);
        Assert.DoesNotContain("LEAKME", ex.Message);
    }

    [Theory]
    [InlineData("http://example.com/")]
    [InlineData("http://seller-api.topi.eu/")]
    public void Environment_InsecureApiBaseAddress_IsRejected(string api)
    {
        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment("custom", new Uri("https://identity.topi.eu/oauth2/token"), new Uri(api)));

        Assert.Equal("apiBaseAddress", ex.ParamName);
    }

    [Theory]
    [InlineData("http://127.0.0.1:8080/oauth2/token")]
    [InlineData("http://127.1.2.3/oauth2/token")]
    [InlineData("http://localhost:8080/oauth2/token")]
    [InlineData("http://LOCALHOST/oauth2/token")]
    [InlineData("http://[::1]:8080/oauth2/token")]
    [InlineData("https://identity.topi.eu/oauth2/token")]
    [InlineData("https://proxy.example.com:8443/topi/oauth2/token")]
    public void Environment_HttpsOrLoopbackEndpoint_IsAccepted(string endpoint)
    {
        var environment = new TopiEnvironment("custom", new Uri(endpoint), new Uri(new Uri(endpoint), "/api"));

        Assert.Equal(new Uri(endpoint), environment.TokenEndpoint);
        Assert.EndsWith("/", environment.ApiBaseAddress.AbsolutePath);
    }

    [Fact]
    public void Environment_RelativeOrMissingUris_AreRejected()
    {
        ArgumentException relativeToken = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment("x", new Uri("/oauth2/token", UriKind.Relative), new Uri("https://a.example/")));
        ArgumentException relativeApi = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment("x", new Uri("https://a.example/oauth2/token"), new Uri("v1/", UriKind.Relative)));
        ArgumentException nullToken = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment("x", null!, new Uri("https://a.example/")));
        ArgumentException noName = Assert.ThrowsAny<ArgumentException>(() => new TopiEnvironment(" ", new Uri("https://a.example/oauth2/token"), new Uri("https://a.example/")));

        Assert.Equal("tokenEndpoint", relativeToken.ParamName);
        Assert.Equal("apiBaseAddress", relativeApi.ParamName);
        Assert.Equal("tokenEndpoint", nullToken.ParamName);
        Assert.Equal("name", noName.ParamName);
    }

    [Fact]
    public void Environment_Presets_AreHttpsAndDistinct()
    {
        Assert.Equal("https", TopiEnvironment.Production.TokenEndpoint.Scheme);
        Assert.Equal("https", TopiEnvironment.Sandbox.TokenEndpoint.Scheme);
        Assert.NotEqual(TopiEnvironment.Production.TokenEndpoint, TopiEnvironment.Sandbox.TokenEndpoint);
        Assert.Same(TopiEnvironment.Sandbox, new TopiOptions().Environment); // a forgotten setting never touches Production
    }

    public static TheoryData<string, Action<TopiOptions>> BadSettings => new()
    {
        { nameof(TopiOptions.ExpirySkew), o => o.ExpirySkew = TimeSpan.FromSeconds(-1) },
        { nameof(TopiOptions.ExpirySkew), o => o.ExpirySkew = TimeSpan.FromDays(1) },
        { nameof(TopiOptions.RefreshAhead), o => o.RefreshAhead = TimeSpan.FromSeconds(-1) },
        { nameof(TopiOptions.RequestTimeout), o => o.RequestTimeout = TimeSpan.Zero },
        { nameof(TopiOptions.RequestTimeout), o => o.RequestTimeout = TimeSpan.FromSeconds(-5) },
        { nameof(TopiOptions.RequestTimeout), o => o.RequestTimeout = Timeout.InfiniteTimeSpan },
        { nameof(TopiOptions.RetryBaseDelay), o => o.RetryBaseDelay = TimeSpan.FromMilliseconds(-1) },
        { nameof(TopiOptions.MaxRetryDelay), o => o.MaxRetryDelay = TimeSpan.FromSeconds(-1) },
        { nameof(TopiOptions.MaxTokenAttempts), o => o.MaxTokenAttempts = 0 },
        { nameof(TopiOptions.MaxTokenAttempts), o => o.MaxTokenAttempts = -3 },
        { nameof(TopiOptions.MaxTokenAttempts), o => o.MaxTokenAttempts = 1000 },
        { nameof(TopiOptions.MaxApiRetries), o => o.MaxApiRetries = -1 },
        { nameof(TopiOptions.Environment), o => o.Environment = null! },
        { nameof(TopiOptions.TimeProvider), o => o.TimeProvider = null! },
        { nameof(TopiOptions.Scope), o => o.Scope = "" },
        { nameof(TopiOptions.Scope), o => o.Scope = "   " },
        { nameof(TopiOptions.Scope), o => o.Scope = null! },
        { nameof(TopiOptions.Scope), o => o.Scope = "client\r\nX-Injected: 1" },
    };

    [Theory]
    [MemberData(nameof(BadSettings))]
    public void Provider_SettingOutOfRange_ThrowsArgumentExceptionNamingIt(string property, Action<TopiOptions> breakIt)
    {
        TopiOptions options = Valid();
        breakIt(options);

        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiTokenProvider(options));

        Assert.Equal(property, ex.ParamName);
        Assert.False(ex.ToString().Contains(options.ClientSecret, StringComparison.Ordinal), "the message shows the secret");
    }

    [Fact]
    public void Provider_BoundarySettings_AreAccepted()
    {
        TopiOptions options = Valid();
        options.ExpirySkew = TimeSpan.Zero;
        options.RefreshAhead = TimeSpan.Zero;
        options.RetryBaseDelay = TimeSpan.Zero;
        options.MaxRetryDelay = TimeSpan.Zero;
        options.MaxTokenAttempts = 1;
        options.MaxApiRetries = 0;
        options.RequestTimeout = TimeSpan.FromMilliseconds(1);

        using var provider = new TopiTokenProvider(options);

        Assert.NotNull(provider.Environment);
    }

    [Fact]
    public void Provider_NullArguments_Throw()
    {
        Assert.Throws<ArgumentNullException>(() => new TopiTokenProvider(null!));
        Assert.Throws<ArgumentNullException>(() => new TopiTokenProvider(Valid(), (HttpMessageHandler)null!));
        Assert.Throws<ArgumentNullException>(() => new TopiToken("abc", DateTimeOffset.UtcNow, null!));
    }

    [Theory]
    [InlineData("")]
    [InlineData("has space")]
    [InlineData("tök")]
    [InlineData("line\nbreak")]
    public void TopiToken_UnusableAccessToken_IsRejectedWithoutEchoingIt(string accessToken)
    {
        ArgumentException ex = Assert.ThrowsAny<ArgumentException>(() => new TopiToken(accessToken, DateTimeOffset.UtcNow, ["client"]));

        Assert.Equal("accessToken", ex.ParamName);
        if (accessToken.Length > 0) Assert.False(ex.Message.Contains(accessToken, StringComparison.Ordinal), "the message shows the token");
    }

    [Fact]
    public async Task Provider_ValidOptionsAgainstTheFake_Works()
    {
        await using FakeTopiServer server = StartServer();
        using TopiTokenProvider provider = new(TestSupport.OptionsFor(server));

        TopiToken token = await provider.GetTokenAsync();

        Assert.NotNull(token);
    }

    private static void AssertDoesNotEcho(ArgumentException ex, string? value)
    {
        if (string.IsNullOrWhiteSpace(value)) return;
        Assert.False(ex.ToString().Contains(value, StringComparison.Ordinal), "the message shows the value");
        Assert.False(ex.ToString().Contains("LEAKME", StringComparison.Ordinal), "the message shows part of the value");
    }
}
