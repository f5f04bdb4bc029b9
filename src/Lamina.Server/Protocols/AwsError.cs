using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lamina.Server.Protocols;

/// <summary>
/// An error as AWS sends it: the code in <c>x-amzn-ErrorType</c> (botocore and the JS SDK read it first),
/// a JSON body with <c>Type</c> and the message under the member name the service model gives that exception
/// (<c>Message</c> for some, <c>message</c> for others; LAMBDA.md §2.1).
/// </summary>
internal sealed class AwsError : IResult
{
    // Exceptions whose model member is "Message" (capitalised); every other one uses "message".
    private static readonly HashSet<string> CapitalisedMessage = new(StringComparer.Ordinal)
    {
        "ResourceNotFoundException", "ServiceException", "ResourceInUseException",
        "InvalidRuntimeException", "InvalidZipFileException", "AccessDeniedException",
    };

    public AwsError(int statusCode, string code, string message, string? reason = null)
    {
        StatusCode = statusCode;
        Code = code;
        Message = message;
        Reason = reason;
    }

    public int StatusCode { get; }
    public string Code { get; }
    public string Message { get; }

    /// <summary>TooManyRequestsException carries a <c>Reason</c>.</summary>
    public string? Reason { get; }

    public static AwsError InvalidParameter(string message) => new(400, "InvalidParameterValueException", message);
    public static AwsError Validation(string message) => new(400, "ValidationException", message);
    public static AwsError InvalidRequestContent(string message) => new(400, "InvalidRequestContentException", message);
    public static AwsError NotFound(string message) => new(404, "ResourceNotFoundException", message);
    public static AwsError FunctionNotFound(string arn) => NotFound($"Function not found: {arn}");
    public static AwsError Conflict(string message) => new(409, "ResourceConflictException", message);
    public static AwsError PreconditionFailed(string message) => new(412, "PreconditionFailedException", message);
    public static AwsError RequestTooLarge(string message) => new(413, "RequestTooLargeException", message);
    public static AwsError UnsupportedMediaType(string message) => new(415, "UnsupportedMediaTypeException", message);
    /// <summary>Throttled (429) with Lambda's reason; the response says when to retry (<c>Retry-After: 1</c>).</summary>
    public static AwsError TooManyRequests(string reason) => new(429, "TooManyRequestsException", "Rate Exceeded.", reason);
    public static AwsError Service(string message) => new(500, "ServiceException", message);

    public async Task ExecuteAsync(HttpContext httpContext)
    {
        var response = httpContext.Response;
        response.StatusCode = StatusCode;
        response.Headers["x-amzn-ErrorType"] = Code;
        response.ContentType = "application/json";
        if (StatusCode == StatusCodes.Status429TooManyRequests)
        {
            response.Headers.RetryAfter = "1";
        }
        var body = new AwsErrorBody
        {
            Type = StatusCode >= 500 ? "Service" : "User",
            Reason = Reason,
        };
        if (CapitalisedMessage.Contains(Code))
        {
            body.MessageCapitalised = Message;
        }
        else
        {
            body.Message = Message;
        }
        await JsonSerializer.SerializeAsync(response.Body, body, LaminaJsonContext.Default.AwsErrorBody, httpContext.RequestAborted);
    }
}

internal sealed class AwsErrorBody
{
    public string? Type { get; set; }

    [JsonPropertyName("message")]
    public string? Message { get; set; }

    [JsonPropertyName("Message")]
    public string? MessageCapitalised { get; set; }

    public string? Reason { get; set; }
}
