namespace Lamina.Server.WebConsole;

internal static class ConsoleServiceCollectionExtensions
{
    /// <summary>The metrics history the console's charts read (the console's files need no service).</summary>
    public static IServiceCollection AddConsole(this IServiceCollection services)
    {
        services.AddSingleton<MetricsHistory>();
        return services;
    }
}
