namespace Lamina.Server.DynamoDb;

/// <summary>Where <c>POST /</c> hands DynamoDB and DynamoDB Streams calls (by <c>X-Amz-Target</c>), and the service's registration.</summary>
internal static class DynamoDbEndpoint
{
    public static IServiceCollection AddDynamoDb(this IServiceCollection services)
    {
        services.AddSingleton<DynamoStore>();
        services.AddHostedService(static sp => sp.GetRequiredService<DynamoStore>());
        return services;
    }

    public static async Task DispatchAsync(HttpContext context, string target)
    {
        var store = context.RequestServices.GetRequiredService<DynamoStore>();
        // DynamoDB's own limits apply (25 × 400 KB batches, 100-item transactions): a larger cap than the other JSON APIs'.
        var body = await RuntimeApi.RuntimeApiEndpoints.ReadBodyAsync(context, DynamoDbApi.MaxRequestBytes);
        if (body is null)
        {
            context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
            await DynamoDbApi.WriteErrorAsync(context, new DynamoException("RequestEntityTooLarge", $"Request must be smaller than {DynamoDbApi.MaxRequestBytes} bytes.", 413));
            return;
        }
        if (target.StartsWith(DynamoDbApi.TargetPrefix, StringComparison.Ordinal))
        {
            var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("Lamina.Server.DynamoDb");
            await DynamoDbApi.HandleAsync(context, target[DynamoDbApi.TargetPrefix.Length..], body.Value, store, logger);
            return;
        }
        if (target.StartsWith(StreamsApi.TargetPrefix, StringComparison.Ordinal))
        {
            await StreamsApi.HandleAsync(context, target[StreamsApi.TargetPrefix.Length..], body.Value, store);
            return;
        }
        await DynamoDbApi.WriteErrorAsync(context, new DynamoException("UnknownOperationException", $"Lamina does not serve the operation {target}."));
    }
}
