namespace Lamina.Runtime;

/// <summary>
/// What a function knows about the invocation it is running and the environment it runs in; the same members as
/// <c>Amazon.Lambda.Core.ILambdaContext</c>.
/// </summary>
public interface ILambdaContext
{
    /// <summary>The request id of this invocation (the caller's <c>x-amzn-RequestId</c>).</summary>
    string AwsRequestId { get; }

    /// <summary>The client context the caller sent (<c>ClientContext</c> on Invoke), or null.</summary>
    IClientContext? ClientContext { get; }

    /// <summary>The function's name (<c>AWS_LAMBDA_FUNCTION_NAME</c>).</summary>
    string FunctionName { get; }

    /// <summary>The version being executed: <c>$LATEST</c> or a number (<c>AWS_LAMBDA_FUNCTION_VERSION</c>).</summary>
    string FunctionVersion { get; }

    /// <summary>The Cognito identity of the caller, or null.</summary>
    ICognitoIdentity? Identity { get; }

    /// <summary>The ARN the caller invoked, including a version or alias qualifier if the caller used one.</summary>
    string InvokedFunctionArn { get; }

    /// <summary>Writes to the function's log stream, prefixed with time, request id and level.</summary>
    ILambdaLogger Logger { get; }

    /// <summary>The function's log group (<c>AWS_LAMBDA_LOG_GROUP_NAME</c>).</summary>
    string LogGroupName { get; }

    /// <summary>This execution environment's log stream (<c>AWS_LAMBDA_LOG_STREAM_NAME</c>).</summary>
    string LogStreamName { get; }

    /// <summary>The memory configured for the function, in MB (<c>AWS_LAMBDA_FUNCTION_MEMORY_SIZE</c>).</summary>
    int MemoryLimitInMB { get; }

    /// <summary>Time left before the invocation times out; never negative.</summary>
    TimeSpan RemainingTime { get; }

    /// <summary>The X-Ray trace header of this invocation (also in the <c>_X_AMZN_TRACE_ID</c> variable), or empty.</summary>
    string TraceId { get; }
}

/// <summary>The client context a mobile SDK (or any caller) sends with an invocation.</summary>
public interface IClientContext
{
    /// <summary>Environment information the client sent (<c>env</c>).</summary>
    IDictionary<string, string> Environment { get; }

    /// <summary>The client application (<c>client</c>), or null.</summary>
    IClientApplication? Client { get; }

    /// <summary>Custom values the client sent (<c>custom</c>).</summary>
    IDictionary<string, string> Custom { get; }
}

/// <summary>The application that sent a client context.</summary>
public interface IClientApplication
{
    /// <summary><c>app_package_name</c>.</summary>
    string AppPackageName { get; }

    /// <summary><c>app_title</c>.</summary>
    string AppTitle { get; }

    /// <summary><c>app_version_code</c>.</summary>
    string AppVersionCode { get; }

    /// <summary><c>app_version_name</c>.</summary>
    string AppVersionName { get; }

    /// <summary><c>installation_id</c>.</summary>
    string InstallationId { get; }
}

/// <summary>The Amazon Cognito identity that made the request.</summary>
public interface ICognitoIdentity
{
    /// <summary><c>cognitoIdentityId</c>.</summary>
    string IdentityId { get; }

    /// <summary><c>cognitoIdentityPoolId</c>.</summary>
    string IdentityPoolId { get; }
}
