namespace Lamina.Server.Hosting;

/// <summary>
/// Every response carries <c>x-amzn-RequestId</c> (botocore and the JS SDK read it into the response metadata). For an
/// invocation the same id is the function's <c>aws_request_id</c>, as on Lambda.
/// </summary>
internal static class RequestIds
{
    private const string ItemKey = "lamina.requestId";

    public static IApplicationBuilder UseRequestIds(this IApplicationBuilder app) => app.Use(static (context, next) =>
    {
        var id = Guid.NewGuid().ToString();
        context.Items[ItemKey] = id;
        context.Response.Headers["x-amzn-RequestId"] = id;
        return next(context);
    });

    public static string Of(HttpContext context) => context.Items[ItemKey] as string ?? Guid.NewGuid().ToString();
}
