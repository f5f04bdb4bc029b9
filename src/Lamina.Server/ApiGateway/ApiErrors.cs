using Lamina.Server.Protocols;

namespace Lamina.Server.ApiGateway;

/// <summary>
/// API Gateway's errors (both APIs): the code in <c>x-amzn-ErrorType</c> and a <c>message</c>, with the statuses of
/// botocore's models (<c>BadRequestException</c> 400, <c>NotFoundException</c> 404, <c>ConflictException</c> 409,
/// <c>TooManyRequestsException</c>/<c>LimitExceededException</c> 429).
/// </summary>
internal static class ApiErrors
{
    public static AwsError BadRequest(string message) => new(400, "BadRequestException", message);

    public static AwsError NotFound(string message) => new(404, "NotFoundException", message);

    public static AwsError Conflict(string message) => new(409, "ConflictException", message);

    public static AwsError ApiNotFound(string account, string apiId) => NotFound($"Invalid API identifier specified {account}:{apiId}");

    public static AwsError LimitExceeded(string message) => new(429, "LimitExceededException", message);
}
