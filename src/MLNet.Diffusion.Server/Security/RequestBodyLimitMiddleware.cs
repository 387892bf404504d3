using Microsoft.AspNetCore.Http.Features;
using MLNet.Diffusion.Server.Errors;

namespace MLNet.Diffusion.Server.Security;

/// <summary>
/// Holds every request body to <see cref="DiffusionServerOptions.MaxRequestBodyBytes"/>: a declared
/// <c>Content-Length</c> over it is answered 413 before anything is read; otherwise the server's own limit
/// (<see cref="IHttpMaxRequestBodySizeFeature"/>, Kestrel's <c>MaxRequestBodySize</c>) is set to it, and where a server
/// has no such limit (the test server) the body is read through a stream that stops at it.
/// </summary>
internal sealed class RequestBodyLimitMiddleware(RequestDelegate next, DiffusionServerOptions options)
{
    /// <summary>Applies the limit and runs the rest of the pipeline.</summary>
    public Task InvokeAsync(HttpContext context)
    {
        long limit = options.MaxRequestBodyBytes;
        if (context.Request.ContentLength is long declared && declared > limit)
            throw TooLarge(limit, declared);
        var feature = context.Features.Get<IHttpMaxRequestBodySizeFeature>();
        if (feature is { IsReadOnly: false })
            feature.MaxRequestBodySize = limit;
        else if (feature is null)
            context.Request.Body = new LimitedReadStream(context.Request.Body, limit);
        return next(context);
    }

    internal static RequestException TooLarge(long limit, long? size) =>
        new(StatusCodes.Status413PayloadTooLarge,
            $"The request body{(size is long s ? $" ({s} bytes)" : "")} is larger than the server's limit of {limit} bytes; send a smaller image, or start the server with a larger limit.",
            null, "request_too_large");

    /// <summary>A read-only view of a stream that fails once more than <c>limit</c> bytes have been read.</summary>
    private sealed class LimitedReadStream(Stream inner, long limit) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        private int Count(int n)
        {
            _read += n;
            if (_read > limit) throw TooLarge(limit, null);
            return n;
        }
    }
}
