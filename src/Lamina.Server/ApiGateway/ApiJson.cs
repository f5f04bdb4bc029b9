using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>Reading API Gateway's JSON requests and writing its answers (both APIs).</summary>
internal static class ApiJson
{
    /// <summary>Largest control-plane request: an imported API definition (API Gateway's own import limit is 6 MB).</summary>
    public const int MaxRequestBytes = 6 * 1024 * 1024;

    /// <summary>
    /// The request body (capped at <paramref name="limit"/>); null with an error when it is larger. The error is API
    /// Gateway's <c>BadRequestException</c>, never a 500.
    /// </summary>
    public static async Task<(byte[]? Body, AwsError? Error)> ReadBodyAsync(HttpContext context, int limit = MaxRequestBytes)
    {
        var request = context.Request;
        if (request.ContentLength > limit)
        {
            return (null, ApiErrors.BadRequest($"Request body is too large: the limit is {limit} bytes."));
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return (null, ApiErrors.BadRequest($"Request body is too large: the limit is {limit} bytes."));
            }
            buffer.Write(chunk, 0, read);
        }
        return (buffer.ToArray(), null);
    }

    /// <summary>Reads a JSON object of <typeparamref name="T"/>; no body reads as an empty object.</summary>
    public static async Task<(T? Value, AwsError? Error)> ReadAsync<T>(HttpContext context, JsonTypeInfo<T> typeInfo) where T : class
    {
        var (body, error) = await ReadBodyAsync(context, 1024 * 1024);
        if (error is not null)
        {
            return (null, error);
        }
        return Parse(body!, typeInfo);
    }

    public static (T? Value, AwsError? Error) Parse<T>(byte[] body, JsonTypeInfo<T> typeInfo) where T : class
    {
        if (body.Length == 0 || body.AsSpan().Trim(" \r\n\t"u8).Length == 0)
        {
            body = "{}"u8.ToArray();
        }
        try
        {
            return JsonSerializer.Deserialize(body, typeInfo) is { } value
                ? (value, null)
                : (null, ApiErrors.BadRequest("Invalid request body: expected a JSON object."));
        }
        catch (JsonException e)
        {
            // The reader's syntax messages are useful; the binder's name .NET types, which mean nothing to a caller.
            var reason = e.Message.Contains("Lamina.", StringComparison.Ordinal) || e.Message.Contains("System.", StringComparison.Ordinal)
                ? $"unexpected value at {e.Path}"
                : e.Message;
            return (null, ApiErrors.BadRequest($"Invalid request body: {reason}"));
        }
    }

    public static IResult Ok<T>(T value, JsonTypeInfo<T> typeInfo, int status = StatusCodes.Status200OK) => new JsonAnswer<T>(value, typeInfo, status);

    public static IResult Created<T>(T value, JsonTypeInfo<T> typeInfo) => new JsonAnswer<T>(value, typeInfo, StatusCodes.Status201Created);

    /// <summary>A page of <paramref name="items"/> from the opaque token <paramref name="token"/> (an offset), at most <paramref name="limit"/> long.</summary>
    public static (List<T> Page, string? Next) Page<T>(IReadOnlyList<T> items, string? token, string? limit, int defaultLimit = 100)
    {
        var start = int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out var offset) ? Math.Clamp(offset, 0, items.Count) : 0;
        var size = int.TryParse(limit, NumberStyles.None, CultureInfo.InvariantCulture, out var max) && max > 0 ? Math.Min(max, 500) : defaultLimit;
        var page = items.Skip(start).Take(size).ToList();
        var next = start + page.Count < items.Count ? (start + page.Count).ToString(CultureInfo.InvariantCulture) : null;
        return (page, next);
    }

    /// <summary>A query member, or null.</summary>
    public static string? Query(HttpContext context, string name) => context.Request.Query.TryGetValue(name, out var value) ? value.ToString() : null;

    private sealed class JsonAnswer<T>(T value, JsonTypeInfo<T> typeInfo, int status) : IResult
    {
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            var response = httpContext.Response;
            response.StatusCode = status;
            response.ContentType = "application/json";
            await JsonSerializer.SerializeAsync(response.Body, value, typeInfo, httpContext.RequestAborted);
        }
    }
}
