using System.Globalization;
using Lamina.Server.Hosting;
using Lamina.Server.Lambda;
using Lamina.Server.Logs;
using Lamina.Server.Sandbox;

namespace Lamina.Server.Invoke;

/// <summary>The environment of a runtime process, as Lambda builds it (LAMBDA.md §7.1).</summary>
internal static class EnvironmentVariables
{
    /// <summary>Defaults first, then the user's variables, then the reserved ones, which nobody can override.</summary>
    public static Dictionary<string, string> For(FunctionConfig config, InvocationLog log, LaminaOptions options, Security.SessionCredentials? credentials,
        bool provisioned = false)
    {
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in RuntimeCatalog.DefaultVariables(config.Runtime))
        {
            variables[key] = value;
        }
        variables["AWS_XRAY_CONTEXT_MISSING"] = "LOG_ERROR";
        variables["TZ"] = ":UTC";
        // The AWS SDKs (and the CLI) send every call to Lamina, through the environment's own socket; a user's value wins.
        variables["AWS_ENDPOINT_URL"] = $"http://127.0.0.1:{SandboxLauncher.RuntimeApiPort}";
        foreach (var (key, value) in config.EnvironmentVariables)
        {
            variables[key] = value;
        }

        variables["_HANDLER"] = config.Handler;
        variables["AWS_REGION"] = options.Region;
        variables["AWS_DEFAULT_REGION"] = options.Region;
        if (!RuntimeCatalog.IsCustom(config.Runtime))
        {
            variables["AWS_EXECUTION_ENV"] = "AWS_Lambda_" + config.Runtime;
        }
        variables["AWS_LAMBDA_FUNCTION_NAME"] = config.FunctionName;
        variables["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = config.MemorySize.ToString(CultureInfo.InvariantCulture);
        variables["AWS_LAMBDA_FUNCTION_VERSION"] = config.Version;
        variables["AWS_LAMBDA_INITIALIZATION_TYPE"] = provisioned ? "provisioned-concurrency" : "on-demand";
        variables["AWS_LAMBDA_LOG_GROUP_NAME"] = config.LogGroupName;
        variables["AWS_LAMBDA_LOG_STREAM_NAME"] = log.LogStreamName;
        variables["AWS_LAMBDA_LOG_FORMAT"] = config.LogFormat;
        if (config.LogFormat == "JSON")
        {
            // The runtime's own logger filters by it (Lambda sets it from ApplicationLogLevel, INFO by default).
            variables["AWS_LAMBDA_LOG_LEVEL"] = config.ApplicationLogLevel ?? "INFO";
        }
        if (credentials is not null)
        {
            variables["AWS_ACCESS_KEY_ID"] = credentials.AccessKeyId;
            variables["AWS_SECRET_ACCESS_KEY"] = credentials.SecretAccessKey;
            variables["AWS_SESSION_TOKEN"] = credentials.SessionToken;
        }
        variables["AWS_LAMBDA_RUNTIME_API"] = $"127.0.0.1:{SandboxLauncher.RuntimeApiPort}";
        variables["LAMBDA_TASK_ROOT"] = "/var/task";
        variables["LAMBDA_RUNTIME_DIR"] = "/var/runtime";
        return variables;
    }
}
