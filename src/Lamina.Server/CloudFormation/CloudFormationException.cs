namespace Lamina.Server.CloudFormation;

/// <summary>
/// A CloudFormation error as its Query protocol reports it (<c>ErrorResponse</c>: Type Sender, Code, Message): a
/// client mistake, never a bug. <c>ValidationError</c> is CloudFormation's answer to almost every bad request.
/// </summary>
internal sealed class CloudFormationException(string code, string message, int status = 400) : Exception(message)
{
    public string Code { get; } = code;

    public int Status { get; } = status;

    public static CloudFormationException Validation(string message) => new("ValidationError", message);

    public static CloudFormationException StackNotFound(string stack) => Validation($"Stack with id {stack} does not exist");
}
