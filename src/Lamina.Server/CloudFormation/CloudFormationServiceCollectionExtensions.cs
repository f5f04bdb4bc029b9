namespace Lamina.Server.CloudFormation;

internal static class CloudFormationServiceCollectionExtensions
{
    /// <summary>The CloudFormation-compatible API's engine, its store and the loopback client its providers use.</summary>
    public static IServiceCollection AddCloudFormation(this IServiceCollection services)
    {
        services.AddSingleton<StackStore>();
        services.AddSingleton<LoopbackClient>();
        services.AddSingleton<StackEngine>();
        services.AddHostedService(static s => s.GetRequiredService<StackEngine>());
        return services;
    }
}
