using System.Text;

namespace Topi.Testing;

/// <summary>Start-up settings of a <see cref="FakeTopiServer"/>.</summary>
public sealed class FakeTopiServerOptions
{
    /// <summary>The client id the token endpoint accepts. Default <c>test-client</c>.</summary>
    public string ClientId { get; set; } = "test-client";

    /// <summary>The client secret the token endpoint accepts. Default <c>test-secret</c>.</summary>
    public string ClientSecret { get; set; } = "test-secret";

    /// <summary>
    /// The environment embedded in every token (<c>env</c> claim). A token minted for another
    /// environment, or by another server (another signing key), is rejected. Default <c>sandbox</c>.
    /// </summary>
    public string EnvironmentName { get; set; } = "sandbox";

    /// <summary>How long an issued token is valid; also the <c>expires_in</c> answered. Default 7200 s.</summary>
    public TimeSpan TokenLifetime { get; set; } = TimeSpan.FromSeconds(7200);

    /// <summary>The server's clock for <c>iat</c>/<c>exp</c> and for expiry checks. Default <see cref="System.TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>The <c>scope</c> string answered with each token. Default: the guide's string, byte for byte.</summary>
    public string Scope { get; set; } = FakeTopiServer.GuideScope;

    /// <summary>How many shipping methods are seeded at start. Default 5.</summary>
    public int ShippingMethodCount { get; set; } = 5;

    /// <summary>How many shipping methods one page of <c>GET /v1/shipping-method</c> holds. Default 2.</summary>
    public int PageSize { get; set; } = 2;

    /// <summary>Seed for the random failures (<see cref="FakeTopiServer.TokenFailureRate"/>, <see cref="FakeTopiServer.ApiUnauthorizedRate"/>); null: unseeded.</summary>
    public int? RandomSeed { get; set; }

    /// <summary>How many requests <see cref="FakeTopiServer.Requests"/> keeps (the oldest are dropped). Default 10 000.</summary>
    public int MaxRecordedRequests { get; set; } = 10_000;
}

/// <summary>Which endpoint a request went to.</summary>
public enum FakeEndpointKind
{
    /// <summary><c>/oauth2/token</c>.</summary>
    Token,

    /// <summary>Anything else: the Seller API.</summary>
    Api,
}

/// <summary>A request as the fake server received it.</summary>
public sealed class RecordedRequest
{
    internal RecordedRequest(long sequence, FakeEndpointKind kind, string method, string path, IReadOnlyDictionary<string, string> headers, byte[] body, DateTimeOffset receivedAt)
    {
        Sequence = sequence;
        Kind = kind;
        Method = method;
        Path = path;
        Headers = headers;
        Body = body;
        ReceivedAt = receivedAt;
    }

    /// <summary>1 for the first request the server received, then 2, 3, ...</summary>
    public long Sequence { get; }

    /// <summary>Token endpoint or Seller API.</summary>
    public FakeEndpointKind Kind { get; }

    /// <summary>The HTTP method, e.g. <c>POST</c>.</summary>
    public string Method { get; }

    /// <summary>The request target as sent: path and query, e.g. <c>/v1/shipping-method?page=1</c>.</summary>
    public string Path { get; }

    /// <summary>A copy of the request headers, names compared case-insensitively (repeated headers joined with ",").</summary>
    public IReadOnlyDictionary<string, string> Headers { get; }

    /// <summary>The request body, byte for byte (empty when none).</summary>
    public byte[] Body { get; }

    /// <summary>When the request was received (real clock, UTC).</summary>
    public DateTimeOffset ReceivedAt { get; }

    /// <summary>The body decoded as UTF-8.</summary>
    public string BodyText => Encoding.UTF8.GetString(Body);

    /// <summary>A header's value, or null when the request had none.</summary>
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    /// <inheritdoc />
    public override string ToString() => $"#{Sequence} {Kind} {Method} {Path} ({Body.Length} bytes)";
}

/// <summary>A shipping method held by the fake Seller API (OpenAPI <c>ShippingMethodResult</c>).</summary>
/// <param name="Id">topi shipping method ID (<c>id</c>).</param>
/// <param name="SellerShippingMethodReference">Seller's own reference (<c>seller_shipping_method_reference</c>).</param>
/// <param name="Name">Name (<c>name</c>); null: left out of the JSON.</param>
/// <param name="IsInStorePickup">In-store pickup (<c>is_in_store_pickup</c>).</param>
/// <param name="Supported">Supported (<c>supported</c>).</param>
public sealed record FakeShippingMethod(string Id, string SellerShippingMethodReference, string? Name, bool IsInStorePickup, bool Supported);
