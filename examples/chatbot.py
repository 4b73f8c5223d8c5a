"""The guide's complete chatbot example, unchanged but for the import.

Run it twice: the second run continues the first run's session (the state lives in
./chatbot_data.db).
"""

import asyncio

from sessiondb import DatabaseSessionService

# Setup
db_url = "sqlite:///./chatbot_data.db"
session_service = DatabaseSessionService(db_url=db_url)

APP_NAME = "customer_support_bot"


async def handle_user_message(user_id: str, message: str):
    """Process a message and maintain session state"""

    # Find or create session
    existing_sessions = session_service.list_sessions(app_name=APP_NAME, user_id=user_id)

    if existing_sessions:
        # Use most recent session
        session = existing_sessions[0]
        print(f"Continuing session {session.id}")
    else:
        # Create new session
        session = await session_service.create_session(
            app_name=APP_NAME,
            user_id=user_id,
            state={"message_count": 0, "conversation_history": [], "user_name": None},
        )
        print(f"Started new session {session.id}")

    # Get current state
    state = session.state

    # Update conversation
    state["message_count"] += 1
    state["conversation_history"].append({"role": "user", "content": message})

    # Simple bot response
    if state["message_count"] == 1:
        response = "Hello! What's your name?"
    elif state["user_name"] is None and state["message_count"] == 2:
        state["user_name"] = message
        response = f"Nice to meet you, {message}! How can I help you today?"
    else:
        response = f"Thanks for your message, {state['user_name']}!"

    state["conversation_history"].append({"role": "assistant", "content": response})

    # Save updated state to database
    await session_service.update_session_state(session.id, state)

    return response


# Test it
async def main():
    user_id = "customer_001"

    # Simulate conversation
    print(await handle_user_message(user_id, "Hi there!"))
    print(await handle_user_message(user_id, "My name is Alice"))
    print(await handle_user_message(user_id, "I need help with my order"))

    # Show all sessions (persisted in database)
    sessions = session_service.list_sessions(APP_NAME, user_id)
    print(f"\nTotal sessions in database: {len(sessions)}")
    print(f"Messages in current session: {sessions[0].state['message_count']}")


asyncio.run(main())
