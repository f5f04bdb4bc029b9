namespace Lamina.Server.ApiGateway;

internal static class ApiGatewayServiceCollectionExtensions
{
    /// <summary>API Gateway (issue #22): the registry of APIs, keys and plans, the data plane and the JWT validator.</summary>
    public static IServiceCollection AddApiGateway(this IServiceCollection services)
    {
        services.AddSingleton<ApiRegistry>();
        services.AddHostedService(static sp => sp.GetRequiredService<ApiRegistry>());
        services.AddSingleton<JwtValidator>();
        services.AddSingleton<UsagePlans>();
        services.AddSingleton<ExecuteApi>();
        return services;
    }

    /// <summary>Both control planes: HTTP APIs (<c>/v2/apis</c>) and REST APIs (<c>/restapis</c>, <c>/apikeys</c>, <c>/usageplans</c>).</summary>
    public static IEndpointRouteBuilder MapApiGatewayApis(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHttpApisApi();
        endpoints.MapRestApisApi();
        return endpoints;
    }

    /// <summary>
    /// Takes the requests addressed to an API (its host name or <c>/_aws/execute-api/</c>) before authentication (an API
    /// has its own) and routing.
    /// </summary>
    public static IApplicationBuilder UseExecuteApi(this IApplicationBuilder app)
    {
        var executeApi = app.ApplicationServices.GetRequiredService<ExecuteApi>();
        return app.Use((context, next) =>
            ExecuteApi.TryMatch(context.Request, out var apiId, out var prefixLength) ? executeApi.HandleAsync(context, apiId, prefixLength) : next(context));
    }
}
