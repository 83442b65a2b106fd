using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Topi.Testing;

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, Content-Length and chunked request bodies,
/// <c>Expect: 100-continue</c>) used by <see cref="FakeTopiServer"/>. It exists instead of
/// <see cref="HttpListener"/> because the managed HttpListener (Linux, macOS) cannot drop a
/// connection without answering: its <c>Response.Abort()</c> still writes a <c>200</c> head.
/// Here every exchange can be answered byte for byte, or dropped with a TCP reset.
/// </summary>
internal sealed class FakeHttpHost : IAsyncDisposable
{
    private const int MaxLineBytes = 16 * 1024;
    private const int MaxHeaderCount = 200;
    private const long MaxBodyBytes = 64L * 1024 * 1024;
    private static readonly TimeSpan DisposeWait = TimeSpan.FromSeconds(10);

    private readonly Func<FakeHttpExchange, CancellationToken, Task> _handler;
    private LoopbackListener _listener = null!;

    private FakeHttpHost(Func<FakeHttpExchange, CancellationToken, Task> handler) => _handler = handler;

    public int Port => _listener.Port;

    public static FakeHttpHost Start(Func<FakeHttpExchange, CancellationToken, Task> handler)
    {
        var host = new FakeHttpHost(handler);
        // On dispose, an exchange in progress may finish before its connection is closed.
        host._listener = LoopbackListener.Start(backlog: 1024, DisposeWait, closeConnectionsFirst: false, host.ServeConnectionAsync);
        return host;
    }

    public ValueTask DisposeAsync() => _listener.DisposeAsync();

    // Serves requests until the client closes the connection or a response closes it, then ends it with a FIN. An
    // exchange that was dropped or cut short (or a failure) returns or throws instead, and the listener closes the
    // socket without a FIN.
    private async Task ServeConnectionAsync(Socket socket, CancellationToken ct)
    {
        using (var stream = new NetworkStream(socket, ownsSocket: false))
        {
            var reader = new Reader(stream);
            while (!ct.IsCancellationRequested)
            {
                FakeHttpRequest? request;
                try
                {
                    request = await ReadRequestAsync(reader, stream, ct).ConfigureAwait(false);
                }
                catch (BadRequestException e)
                {
                    var bad = new FakeHttpExchange(socket, stream, new FakeHttpRequest("GET", "/", "HTTP/1.1", [], [], keepAlive: false));
                    await bad.SendAsync(400, "text/plain", Encoding.ASCII.GetBytes(e.Message), null, ct).ConfigureAwait(false);
                    break;
                }

                if (request is null)
                {
                    break; // the client closed the connection between requests
                }

                var exchange = new FakeHttpExchange(socket, stream, request);
                try
                {
                    await _handler(exchange, ct).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    if (!exchange.Completed)
                    {
                        exchange.Drop();
                    }
                    else
                    {
                        return; // a response was cut short
                    }
                }

                if (exchange.Dropped)
                {
                    return;
                }

                if (!exchange.Completed)
                {
                    await exchange.SendAsync(500, "text/plain", "no response"u8.ToArray(), null, ct).ConfigureAwait(false);
                }

                if (exchange.CloseAfterResponse)
                {
                    break;
                }
            }
        }

        LoopbackListener.CloseGracefully(socket);
    }

    private static async Task<FakeHttpRequest?> ReadRequestAsync(Reader reader, Stream stream, CancellationToken ct)
    {
        string? line;
        do
        {
            line = await reader.ReadLineAsync(ct).ConfigureAwait(false);
            if (line is null)
            {
                return null;
            }
        }
        while (line.Length == 0); // RFC 9112 §2.2: ignore empty lines before a request line

        var parts = line.Split(' ');
        if (parts.Length != 3 || parts[0].Length == 0 || parts[1].Length == 0 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal))
        {
            throw new BadRequestException("Bad request line");
        }

        var headers = new List<KeyValuePair<string, string>>();
        while (true)
        {
            line = await reader.ReadLineAsync(ct).ConfigureAwait(false) ?? throw new BadRequestException("Incomplete request head");
            if (line.Length == 0)
            {
                break;
            }

            var colon = line.IndexOf(':');
            if (colon <= 0 || headers.Count >= MaxHeaderCount)
            {
                throw new BadRequestException("Bad header line");
            }

            headers.Add(new KeyValuePair<string, string>(line[..colon].Trim(), line[(colon + 1)..].Trim()));
        }

        var version = parts[2];
        var connection = Joined(headers, "Connection") ?? "";
        var keepAlive = version == "HTTP/1.1"
            ? !connection.Contains("close", StringComparison.OrdinalIgnoreCase)
            : connection.Contains("keep-alive", StringComparison.OrdinalIgnoreCase);

        var transferEncoding = Joined(headers, "Transfer-Encoding");
        var contentLength = Joined(headers, "Content-Length");
        var chunked = transferEncoding is not null && transferEncoding.Contains("chunked", StringComparison.OrdinalIgnoreCase);
        long length = 0;
        if (!chunked && contentLength is not null && (!long.TryParse(contentLength, NumberStyles.None, CultureInfo.InvariantCulture, out length) || length > MaxBodyBytes))
        {
            throw new BadRequestException("Bad Content-Length");
        }

        if ((chunked || length > 0) && (Joined(headers, "Expect") ?? "").Contains("100-continue", StringComparison.OrdinalIgnoreCase))
        {
            await stream.WriteAsync("HTTP/1.1 100 Continue\r\n\r\n"u8.ToArray(), ct).ConfigureAwait(false);
        }

        byte[] body;
        if (chunked)
        {
            body = await ReadChunkedAsync(reader, ct).ConfigureAwait(false);
        }
        else if (length > 0)
        {
            body = new byte[length];
            await reader.ReadExactlyAsync(body, ct).ConfigureAwait(false);
        }
        else
        {
            body = [];
        }

        // absolute-form (as sent to a proxy) becomes origin-form
        var target = parts[1];
        if ((target.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || target.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            && Uri.TryCreate(target, UriKind.Absolute, out var absolute))
        {
            target = absolute.PathAndQuery;
        }

        return new FakeHttpRequest(parts[0], target, version, headers, body, keepAlive);
    }

    private static async Task<byte[]> ReadChunkedAsync(Reader reader, CancellationToken ct)
    {
        using var body = new MemoryStream();
        while (true)
        {
            var sizeLine = await reader.ReadLineAsync(ct).ConfigureAwait(false) ?? throw new BadRequestException("Incomplete chunk");
            var semicolon = sizeLine.IndexOf(';');
            var hex = (semicolon < 0 ? sizeLine : sizeLine[..semicolon]).Trim();
            if (!long.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size) || size < 0 || body.Length + size > MaxBodyBytes)
            {
                throw new BadRequestException("Bad chunk size");
            }

            if (size == 0)
            {
                // trailers, up to the empty line
                while (!string.IsNullOrEmpty(await reader.ReadLineAsync(ct).ConfigureAwait(false)))
                {
                }

                return body.ToArray();
            }

            var chunk = new byte[size];
            await reader.ReadExactlyAsync(chunk, ct).ConfigureAwait(false);
            body.Write(chunk);
            if (await reader.ReadLineAsync(ct).ConfigureAwait(false) != "")
            {
                throw new BadRequestException("Bad chunk end");
            }
        }
    }

    internal static string? Joined(List<KeyValuePair<string, string>> headers, string name)
    {
        string? result = null;
        foreach (var header in headers)
        {
            if (string.Equals(header.Key, name, StringComparison.OrdinalIgnoreCase))
            {
                result = result is null ? header.Value : result + ", " + header.Value;
            }
        }

        return result;
    }

    private sealed class BadRequestException(string message) : Exception(message);

    /// <summary>A buffered reader of request heads (Latin-1 lines) and bodies.</summary>
    private sealed class Reader(Stream stream)
    {
        private byte[] _buffer = new byte[8 * 1024];
        private int _start;
        private int _end;

        public async ValueTask<string?> ReadLineAsync(CancellationToken ct)
        {
            while (true)
            {
                var newline = _buffer.AsSpan(_start, _end - _start).IndexOf((byte)'\n');
                if (newline >= 0)
                {
                    var length = newline > 0 && _buffer[_start + newline - 1] == (byte)'\r' ? newline - 1 : newline;
                    var line = Encoding.Latin1.GetString(_buffer, _start, length);
                    _start += newline + 1;
                    return line;
                }

                if (_end - _start >= MaxLineBytes)
                {
                    throw new BadRequestException("Line too long");
                }

                if (!await FillAsync(ct).ConfigureAwait(false))
                {
                    if (_end > _start)
                    {
                        throw new BadRequestException("Incomplete line");
                    }

                    return null;
                }
            }
        }

        public async ValueTask ReadExactlyAsync(Memory<byte> destination, CancellationToken ct)
        {
            var buffered = Math.Min(destination.Length, _end - _start);
            _buffer.AsMemory(_start, buffered).CopyTo(destination);
            _start += buffered;
            if (buffered < destination.Length)
            {
                await stream.ReadExactlyAsync(destination[buffered..], ct).ConfigureAwait(false);
            }
        }

        private async ValueTask<bool> FillAsync(CancellationToken ct)
        {
            if (_start > 0)
            {
                Buffer.BlockCopy(_buffer, _start, _buffer, 0, _end - _start);
                _end -= _start;
                _start = 0;
            }

            if (_end == _buffer.Length)
            {
                Array.Resize(ref _buffer, _buffer.Length * 2);
            }

            var read = await stream.ReadAsync(_buffer.AsMemory(_end), ct).ConfigureAwait(false);
            _end += read;
            return read > 0;
        }
    }
}

/// <summary>A request read by <see cref="FakeHttpHost"/>.</summary>
internal sealed class FakeHttpRequest(string method, string target, string version, List<KeyValuePair<string, string>> headers, byte[] body, bool keepAlive)
{
    public string Method { get; } = method;

    /// <summary>The request target as sent (origin form: path and query).</summary>
    public string Target { get; } = target;

    public string Version { get; } = version;

    public List<KeyValuePair<string, string>> Headers { get; } = headers;

    public byte[] Body { get; } = body;

    public bool KeepAlive { get; } = keepAlive;

    /// <summary>A header's value (repeated headers joined with ", "), or null.</summary>
    public string? Header(string name) => FakeHttpHost.Joined(Headers, name);
}

/// <summary>One request and the means to answer it (once) or drop the connection.</summary>
internal sealed class FakeHttpExchange(Socket socket, Stream stream, FakeHttpRequest request)
{
    public FakeHttpRequest Request { get; } = request;

    public bool Completed { get; private set; }

    public bool Dropped { get; private set; }

    public bool CloseAfterResponse { get; private set; }

    /// <summary>Resets the connection (TCP RST) without sending anything.</summary>
    public void Drop()
    {
        if (Completed)
        {
            return;
        }

        Completed = true;
        Dropped = true;
        try
        {
            socket.LingerState = new LingerOption(true, 0);
        }
        catch (Exception)
        {
            // already closed
        }

        try
        {
            socket.Close();
        }
        catch (Exception)
        {
            // already closed
        }
    }

    /// <summary>
    /// Sends a complete response. A <c>Content-Length</c> among <paramref name="headers"/> replaces the real one
    /// (the body is still sent as given, then the connection is closed); a <c>Connection: close</c> among them
    /// closes the connection afterwards.
    /// </summary>
    public async Task SendAsync(int status, string? contentType, ReadOnlyMemory<byte> body, IReadOnlyList<(string Name, string Value)>? headers, CancellationToken ct)
    {
        var head = Head(status, contentType, body.Length, headers);
        if (!HasBody(status) || Request.Method == "HEAD")
        {
            body = ReadOnlyMemory<byte>.Empty;
        }

        Completed = true;
        if (body.Length <= 64 * 1024)
        {
            var all = new byte[head.Length + body.Length];
            head.CopyTo(all, 0);
            body.CopyTo(all.AsMemory(head.Length));
            await stream.WriteAsync(all, ct).ConfigureAwait(false);
        }
        else
        {
            await stream.WriteAsync(head, ct).ConfigureAwait(false);
            await stream.WriteAsync(body, ct).ConfigureAwait(false);
        }
    }

    /// <summary>Sends 200 application/json with a body of exactly <paramref name="size"/> bytes of JSON padding, streamed.</summary>
    public async Task SendPaddingAsync(long size, CancellationToken ct)
    {
        Completed = true;
        await stream.WriteAsync(Head(200, "application/json", size, null), ct).ConfigureAwait(false);
        if (Request.Method == "HEAD")
        {
            return;
        }

        var prefix = "{\"padding\":\""u8.ToArray();
        var suffix = "\"}"u8.ToArray();
        if (size < prefix.Length + suffix.Length)
        {
            var spaces = new byte[size];
            spaces.AsSpan().Fill((byte)' ');
            await stream.WriteAsync(spaces, ct).ConfigureAwait(false);
            return;
        }

        await stream.WriteAsync(prefix, ct).ConfigureAwait(false);
        var chunk = new byte[64 * 1024];
        chunk.AsSpan().Fill((byte)'a');
        var remaining = size - prefix.Length - suffix.Length;
        while (remaining > 0)
        {
            var n = (int)Math.Min(remaining, chunk.Length);
            await stream.WriteAsync(chunk.AsMemory(0, n), ct).ConfigureAwait(false);
            remaining -= n;
        }

        await stream.WriteAsync(suffix, ct).ConfigureAwait(false);
    }

    private byte[] Head(int status, string? contentType, long contentLength, IReadOnlyList<(string Name, string Value)>? headers)
    {
        var close = !Request.KeepAlive;
        var customLength = false;
        var sb = new StringBuilder(256);
        sb.Append("HTTP/1.1 ").Append(status.ToString(CultureInfo.InvariantCulture)).Append(' ').Append(ReasonPhrase(status)).Append("\r\n");
        sb.Append("Date: ").Append(DateTime.UtcNow.ToString("r", CultureInfo.InvariantCulture)).Append("\r\n");
        if (!string.IsNullOrEmpty(contentType))
        {
            sb.Append("Content-Type: ").Append(contentType).Append("\r\n");
        }

        if (headers is not null)
        {
            foreach (var (name, value) in headers)
            {
                if (string.Equals(name, "Content-Length", StringComparison.OrdinalIgnoreCase))
                {
                    customLength = true;
                }
                else if (string.Equals(name, "Connection", StringComparison.OrdinalIgnoreCase))
                {
                    close |= value.Contains("close", StringComparison.OrdinalIgnoreCase);
                    continue;
                }

                sb.Append(name).Append(": ").Append(value).Append("\r\n");
            }
        }

        if (!customLength && HasBody(status))
        {
            sb.Append("Content-Length: ").Append(contentLength.ToString(CultureInfo.InvariantCulture)).Append("\r\n");
        }

        if (close)
        {
            sb.Append("Connection: close\r\n");
            CloseAfterResponse = true;
        }

        if (customLength)
        {
            CloseAfterResponse = true; // a made-up length desynchronises the connection: end it after the body
        }

        sb.Append("\r\n");
        return Encoding.Latin1.GetBytes(sb.ToString());
    }

    private static bool HasBody(int status) => status >= 200 && status != 204 && status != 304;

    private static string ReasonPhrase(int status) => status switch
    {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    };
}
