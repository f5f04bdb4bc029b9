namespace Lamina.Runtime.Bootstrap;

/// <summary>
/// The handler cannot be loaded (bad handler string, missing assembly, type or method, unsupported signature).
/// Reported to <c>/runtime/init/error</c> with this type's name as <c>errorType</c>, as AWS's .NET runtime does.
/// </summary>
internal sealed class LambdaValidationException : Exception
{
    public LambdaValidationException(string message, Exception? inner = null) : base(message, inner)
    {
    }
}
