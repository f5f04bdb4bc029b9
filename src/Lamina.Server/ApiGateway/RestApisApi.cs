namespace Lamina.Server.ApiGateway;

internal static partial class RestApisApi
{
    public static IEndpointRouteBuilder MapRestApisApi(this IEndpointRouteBuilder endpoints) => endpoints;
}
