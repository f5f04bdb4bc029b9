using System.Globalization;

namespace Lamina.Runtime.Hosting;

/// <summary>The function's reserved environment variables (LAMBDA.md §7.1), read once at start.</summary>
internal sealed class FunctionEnvironment
{
    public string FunctionName { get; init; } = "";

    public string FunctionVersion { get; init; } = "";

    public int MemoryLimitInMB { get; init; }

    public string LogGroupName { get; init; } = "";

    public string LogStreamName { get; init; } = "";

    public static FunctionEnvironment FromEnvironment() => new()
    {
        FunctionName = Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_NAME") ?? "",
        FunctionVersion = Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_VERSION") ?? "",
        MemoryLimitInMB = int.TryParse(Environment.GetEnvironmentVariable("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var memory) ? memory : 0,
        LogGroupName = Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_GROUP_NAME") ?? "",
        LogStreamName = Environment.GetEnvironmentVariable("AWS_LAMBDA_LOG_STREAM_NAME") ?? "",
    };
}
