using Lamina.Server.Hosting;

namespace Lamina.Server.ApiGateway;

/// <summary>The ARNs and endpoint names of API Gateway's resources, in the server's region and account.</summary>
internal static class ApiArns
{
    /// <summary><c>arn:aws:execute-api:REGION:ACCOUNT:apiId</c>: the prefix of every ARN an API invokes functions as.</summary>
    public static string ExecuteApi(LaminaOptions options, string apiId) => $"arn:aws:execute-api:{options.Region}:{options.AccountId}:{apiId}";

    /// <summary>An HTTP API's ARN (<c>arn:aws:apigateway:REGION::/apis/ID</c>), as TagResource names it.</summary>
    public static string HttpApi(LaminaOptions options, string apiId) => $"arn:aws:apigateway:{options.Region}::/apis/{apiId}";

    /// <summary>
    /// The URL of an API's default endpoint: a host name under <c>localhost</c> (which curl and browsers resolve to
    /// loopback) on the port the server listens on. Clients that cannot resolve it use <c>/_aws/execute-api/ID/…</c>.
    /// </summary>
    public static string Endpoint(HttpContext context, LaminaOptions options, string apiId) =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"http://{apiId}.execute-api.localhost:{Lambda.FunctionUrlsApi.ListeningPort(context, options)}");
}
