using System.Security.Cryptography;

namespace Lamina.Server.Hosting;

/// <summary>
/// Every response carries <c>x-amzn-RequestId</c> (botocore and the JS SDK read it into the response metadata). For an
/// invocation the same id is the function's <c>aws_request_id</c>, as on Lambda.
/// </summary>
internal static class RequestIds
{
    // Random bytes drawn 1 KB at a time: Guid.NewGuid and RandomNumberGenerator.Fill each cost a system call or two
    // (read of /dev/urandom, OpenSSL's getpid fork check), per request (issue #19). Still a cryptographic source.
    [ThreadStatic]
    private static byte[]? t_random;

    [ThreadStatic]
    private static int t_used;

    // The id is the request's TraceIdentifier (ASP.NET Core's own logs then name it too): no Items dictionary per request.
    public static IApplicationBuilder UseRequestIds(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        var id = NewId();
        context.TraceIdentifier = id;
        context.Response.Headers["x-amzn-RequestId"] = id;
        return next(context);
    });

    /// <summary>The request's id; a new one for a request that skipped <see cref="UseRequestIds"/> (Kestrel's own identifiers are not UUIDs).</summary>
    public static string Of(HttpContext context) => context.TraceIdentifier is { Length: 36 } id && Guid.TryParseExact(id, "D", out _) ? id : NewId();

    /// <summary>A random (version 4) UUID in its usual form, as Lambda's request ids are.</summary>
    public static string NewId()
    {
        Span<byte> bytes = stackalloc byte[16];
        FillRandom(bytes);
        bytes[7] = (byte)((bytes[7] & 0x0F) | 0x40); // version 4 (Guid's little-endian layout: the high byte of the third group)
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80); // RFC 4122 variant
        return new Guid(bytes).ToString();
    }

    /// <summary>Fills <paramref name="destination"/> (at most 64 bytes) from a per-thread buffer of cryptographic random bytes.</summary>
    public static void FillRandom(Span<byte> destination)
    {
        System.Diagnostics.Debug.Assert(destination.Length <= 64);
        var random = t_random ??= new byte[1024];
        if (t_used == 0 || t_used + destination.Length > random.Length)
        {
            RandomNumberGenerator.Fill(random);
            t_used = 0;
        }
        random.AsSpan(t_used, destination.Length).CopyTo(destination);
        random.AsSpan(t_used, destination.Length).Clear(); // handed out once
        t_used += destination.Length;
    }
}
