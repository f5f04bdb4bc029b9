namespace Lamina.Server.S3;

internal static class S3ServiceCollectionExtensions
{
    /// <summary>The object store and its notifications (the API itself is middleware: <see cref="S3Api.UseS3"/>).</summary>
    public static IServiceCollection AddS3(this IServiceCollection services)
    {
        services.AddSingleton<ObjectStore>();
        services.AddHostedService(static sp => sp.GetRequiredService<ObjectStore>());
        services.AddSingleton<S3Notifications>();
        services.AddHostedService(static sp => sp.GetRequiredService<S3Notifications>());
        return services;
    }
}
