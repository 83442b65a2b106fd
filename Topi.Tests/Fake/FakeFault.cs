namespace Topi.Testing;

/// <summary>What a <see cref="FakeFault"/> does to the one request that consumes it.</summary>
public enum FakeFaultKind
{
    /// <summary>Answer with a fixed status, body, content type and extra headers.</summary>
    Status,

    /// <summary>Answer with an HTML error page such as a reverse proxy (nginx) produces.</summary>
    Html,

    /// <summary>Answer with a raw JSON body (which need not be valid JSON) and a status code.</summary>
    Json,

    /// <summary>Abort the connection without sending any response.</summary>
    Drop,

    /// <summary>Wait for a while, then answer normally.</summary>
    Delay,

    /// <summary>Wait for a test-controlled task, then answer normally.</summary>
    Gate,

    /// <summary>Answer 200 with a very large body of valid-looking JSON padding.</summary>
    Oversized,
}

/// <summary>
/// A scripted misbehaviour for <see cref="FakeTopiServer"/>. Queue it with
/// <see cref="FakeTopiServer.EnqueueTokenFault"/> or <see cref="FakeTopiServer.EnqueueApiFault"/>;
/// each queued fault is consumed, in order, by the next request to the matching endpoint.
/// </summary>
public sealed class FakeFault
{
    private static readonly IReadOnlyList<(string Name, string Value)> NoHeaders = Array.Empty<(string, string)>();

    private FakeFault(FakeFaultKind kind)
    {
        Kind = kind;
    }

    /// <summary>The kind of fault.</summary>
    public FakeFaultKind Kind { get; }

    /// <summary>The status code answered (Status, Html, Json, Oversized).</summary>
    public int StatusCode { get; private init; }

    /// <summary>The body answered (Status, Html, Json); empty for the others.</summary>
    public string Body { get; private init; } = "";

    /// <summary>The Content-Type answered; empty means no Content-Type header.</summary>
    public string ContentType { get; private init; } = "";

    /// <summary>Extra response headers (Status only), e.g. <c>Retry-After</c>.</summary>
    public IReadOnlyList<(string Name, string Value)> Headers { get; private init; } = NoHeaders;

    /// <summary>How long a <see cref="FakeFaultKind.Delay"/> fault waits (real time).</summary>
    public TimeSpan Duration { get; private init; }

    /// <summary>The task a <see cref="FakeFaultKind.Gate"/> fault waits for.</summary>
    public Task? GateTask { get; private init; }

    /// <summary>The exact body size in bytes of an <see cref="FakeFaultKind.Oversized"/> fault.</summary>
    public long Size { get; private init; }

    /// <summary>
    /// Answers <paramref name="code"/> with <paramref name="body"/> (sent as UTF-8),
    /// <paramref name="contentType"/> (empty: none) and extra <paramref name="headers"/>
    /// (e.g. <c>("Retry-After", "2")</c>).
    /// </summary>
    public static FakeFault Status(int code, string body = "", string contentType = "application/json", params (string name, string value)[] headers)
    {
        CheckStatus(code);
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(contentType);
        var copy = new (string Name, string Value)[headers?.Length ?? 0];
        for (var i = 0; i < copy.Length; i++)
        {
            var (name, value) = headers![i];
            ArgumentException.ThrowIfNullOrEmpty(name);
            copy[i] = (name, value ?? "");
        }

        return new FakeFault(FakeFaultKind.Status)
        {
            StatusCode = code,
            Body = body,
            ContentType = contentType,
            Headers = copy,
        };
    }

    /// <summary>Answers <paramref name="code"/> with an nginx-style HTML error page (text/html).</summary>
    public static FakeFault Html(int code)
    {
        CheckStatus(code);
        var title = code + " " + ReasonPhrase(code);
        var body =
            "<html>\r\n" +
            "<head><title>" + title + "</title></head>\r\n" +
            "<body>\r\n" +
            "<center><h1>" + title + "</h1></center>\r\n" +
            "<hr><center>nginx</center>\r\n" +
            "</body>\r\n" +
            "</html>\r\n";
        return new FakeFault(FakeFaultKind.Html)
        {
            StatusCode = code,
            Body = body,
            ContentType = "text/html",
        };
    }

    /// <summary>
    /// Answers <paramref name="code"/> with the raw <paramref name="rawBody"/> as application/json,
    /// byte for byte (it need not be valid JSON: trailing commas, <c>"expires_in":"3600"</c>,
    /// an OAuth error inside a 200, ...).
    /// </summary>
    public static FakeFault Json(string rawBody, int code = 200)
    {
        CheckStatus(code);
        ArgumentNullException.ThrowIfNull(rawBody);
        return new FakeFault(FakeFaultKind.Json)
        {
            StatusCode = code,
            Body = rawBody,
            ContentType = "application/json",
        };
    }

    /// <summary>Aborts the connection without a response (<c>HttpListenerResponse.Abort()</c>).</summary>
    public static FakeFault Drop() => new(FakeFaultKind.Drop);

    /// <summary>Waits <paramref name="duration"/> of real time, then answers normally.</summary>
    public static FakeFault Delay(TimeSpan duration)
    {
        if (duration < TimeSpan.Zero && duration != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(duration));
        }

        return new FakeFault(FakeFaultKind.Delay) { Duration = duration };
    }

    /// <summary>
    /// Waits until <paramref name="gate"/> completes (e.g. a <c>TaskCompletionSource</c>'s task),
    /// then answers normally. Whether the task succeeds, faults or is cancelled does not matter.
    /// Disposing the server releases every gate.
    /// </summary>
    public static FakeFault Gate(Task gate)
    {
        ArgumentNullException.ThrowIfNull(gate);
        return new FakeFault(FakeFaultKind.Gate) { GateTask = gate };
    }

    /// <summary>
    /// Answers 200 application/json with a body of exactly <paramref name="bytes"/> bytes:
    /// <c>{"padding":"aaaa…"}</c> (only spaces when fewer than 14 bytes are asked for).
    /// </summary>
    public static FakeFault Oversized(int bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        return new FakeFault(FakeFaultKind.Oversized)
        {
            StatusCode = 200,
            ContentType = "application/json",
            Size = bytes,
        };
    }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        FakeFaultKind.Status or FakeFaultKind.Html or FakeFaultKind.Json => $"{Kind}({StatusCode})",
        FakeFaultKind.Delay => $"Delay({Duration})",
        FakeFaultKind.Oversized => $"Oversized({Size})",
        _ => Kind.ToString(),
    };

    private static void CheckStatus(int code)
    {
        if (code < 100 || code > 999)
        {
            throw new ArgumentOutOfRangeException(nameof(code), code, "An HTTP status code is between 100 and 999.");
        }
    }

    internal static string ReasonPhrase(int code) => code switch
    {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Not Allowed",
        408 => "Request Time-out",
        413 => "Request Entity Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Temporarily Unavailable",
        504 => "Gateway Time-out",
        _ => "Error",
    };
}
